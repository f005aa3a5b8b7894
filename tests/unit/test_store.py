import json

import pytest

from harness import store
from harness.errors import RunDirError


def make(tmp_path):
    run = store.RunDir.create(tmp_path, "exp", "name: exp\n", {"run_id": "abc"})
    run.event({"trial": "t000", "src": "agent", "ev": "close", "mono": 1.0})
    run.event({"trial": "t001", "src": "agent", "ev": "close", "mono": 2.0})
    run.event({"trial": "t000", "src": "harness", "ev": "trial_end", "error": None})
    return run


def test_phases_and_roundtrip(tmp_path):
    run = make(tmp_path)
    assert run.path.parent == tmp_path / "exp"
    assert run.capture("t000", b"pcap") == "captures/t000.pcap"
    data = store.load(run.path)
    assert data.manifest["run_id"] == "abc" and data.manifest["version"] == store.FORMAT
    assert data.spec_text == "name: exp\n" and data.warnings == []
    by_trial = data.trial_events()
    assert [e["ev"] for e in by_trial["t000"]] == ["close", "trial_end"]
    assert data.pcap("t000") == b"pcap" and data.pcap("t001") is None


def test_two_runs_in_one_second_get_two_directories(tmp_path):
    a = store.RunDir.create(tmp_path, "exp", "", {})
    b = store.RunDir.create(tmp_path, "exp", "", {})
    assert a.path != b.path


def test_unknown_version_is_refused_with_advice(tmp_path):
    run = make(tmp_path)
    doc = json.loads((run.path / store.MANIFEST).read_text())
    doc["version"] = 99
    (run.path / store.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match="version 99; this harness reads"):
        store.load(run.path)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunDirError, match="not a run directory"):
        store.load(tmp_path)


def test_a_last_line_cut_off_mid_write_is_skipped_with_a_warning(tmp_path):
    run = make(tmp_path)
    with open(run.path / store.EVENTS, "a") as f:
        f.write('{"trial": "t001", "src": "agent", "ev": "tw_ap')
    data = store.load(run.path)
    assert len(data.events) == 3
    (warning,) = data.warnings
    assert warning.startswith(f"{run.path / store.EVENTS}:5: last line cut off")


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / store.EVENTS).write_text(store._header("harness-events") + "{oops}\n{}\n"),
     "events.jsonl:2: not a JSON object"),
    (lambda p: (p / store.EVENTS).write_bytes(b'{"format": "harness-events", "version": 1}\n\xff\xfe\n'),
     "events.jsonl: not UTF-8 text"),
    (lambda p: (p / store.EVENTS).write_text("[1, 2]\n"), "events.jsonl:1: not a JSON object"),
    (lambda p: (p / store.SPEC).unlink(), "experiment.yaml: missing"),
    (lambda p: (p / store.EVENTS).unlink(), "events.jsonl: missing"),
    (lambda p: (p / store.MANIFEST).write_text("{"), "manifest.json: not valid JSON"),
])
def test_damage_is_one_line_naming_the_file_and_line(tmp_path, damage, message):
    run = make(tmp_path)
    damage(run.path)
    with pytest.raises(RunDirError, match=message):
        store.load(run.path)


def test_runs_made_before_the_harness_wrote_its_own_events_still_load(tmp_path):
    run = store.RunDir.create(tmp_path, "exp", "", {})
    run.event({"trial": "t000", "src": "agent", "ev": "done", "mono": 1.0})
    run.trial({"trial": "t000", "status": "failed", "why": "capture: tcpdump did not stop", "backend": "nftables",
               "injection_point": "here", "wall_s": 3.0, "phases": {"lab_s": 1.0}, "capture": None})
    events = store.load(run.path).trial_events()["t000"]
    assert events[1] == {"trial": "t000", "src": "harness", "ev": "fault", "backend": "nftables",
                         "injection_point": "here"}
    assert events[2]["ev"] == "trial_end" and events[2]["error"] == "capture: tcpdump did not stop"
