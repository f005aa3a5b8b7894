"""Run directories of format 1, written by older versions of the harness (tests/fixtures/format1,
one for each shape of events they wrote), read through the one upgrader: `harness report` gives
the tables those versions recorded, and with trials.jsonl gone derives the same from the raw data."""

import json
import shutil
from pathlib import Path

import pytest

from harness import cli, store
from harness.record import TrialResult
from harness.report import tables

FIXTURES = sorted(p for p in (Path(__file__).resolve().parents[1] / "fixtures" / "format1").iterdir() if p.is_dir())


def recorded(run: Path) -> list[TrialResult]:
    """The records that version wrote (their timelines, of an older shape, aside)."""
    docs = [json.loads(line) for line in (run / store.TRIALS).read_text().splitlines()[1:]]
    return sorted((TrialResult.from_json({k: v for k, v in d.items() if k != "timeline"}) for d in docs),
                  key=lambda r: r.index)


def report(run: Path, capsys) -> list[dict]:
    assert cli.main(["report", str(run), "--json"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return [{k: v for k, v in t.items() if k != "logs"} for t in json.loads(captured.out)["trials"]]


def test_every_shape_is_there():
    assert len(FIXTURES) >= 6
    assert all(json.loads((f / store.MANIFEST).read_text())["version"] == 1 for f in FIXTURES)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_a_format_1_run_reports_what_it_recorded_and_the_same_from_its_raw_data(fixture, tmp_path, capsys):
    run = tmp_path / fixture.name
    shutil.copytree(fixture, run)
    derived = report(run, capsys)
    assert all(t["status"] == "ok" for t in derived)
    assert tables.terminal([TrialResult.from_json(t) for t in derived]) == tables.terminal(recorded(fixture))
    assert (run / store.TRIALS).read_bytes() == (fixture / store.TRIALS).read_bytes()  # never rewritten
    (run / store.TRIALS).unlink()
    # The harness's own timings are not raw data: the first versions kept them in trials.jsonl alone.
    own = lambda trials: [{k: v for k, v in t.items() if k not in ("wall_s", "phases")} for t in trials]
    assert own(report(run, capsys)) == own(derived)
