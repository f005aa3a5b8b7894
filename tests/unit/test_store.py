import dataclasses
import json

import pytest

from harness import analyze, plan, spec, store
from harness.errors import RunDirError

from .lost_ack_trial import EVENTS, PCAP

EXP = spec.parse("name: exp\ndescription: d\nrepeat: 2\ncases:\n  - {name: c, close_first: server}\n", "exp.yaml")
TRIALS = plan.trials(EXP)


def make(tmp_path):
    run = store.RunDir.create(tmp_path, EXP, TRIALS, {"run_id": "abc"})
    run.event({"trial": "t000", "src": "agent", "ev": "close", "mono": 1.0, "side": "server", "how": "SIGINT"})
    run.event({"trial": "t001", "src": "agent", "ev": "close", "mono": 2.0, "side": "server", "how": "SIGINT"})
    run.event({"trial": "t000", "src": "harness", "ev": "trial_end", "error": None})
    return run


def test_phases_and_roundtrip(tmp_path):
    run = make(tmp_path)
    assert run.path.parent == tmp_path / "exp"
    assert run.capture("t000", b"pcap") == "captures/t000.pcap"
    data = store.load(run.path)
    assert data.manifest["run_id"] == "abc" and data.manifest["version"] == store.FORMAT
    assert data.spec_text == EXP.text and data.warnings == []
    by_trial = data.trial_events()
    assert [e["ev"] for e in by_trial["t000"]] == ["close", "trial_end"]
    assert data.pcap("t000") == b"pcap" and data.pcap("t001") is None


def test_the_trials_as_planned_are_read_back_not_planned_again(tmp_path):
    run = make(tmp_path)
    (run.path / store.SPEC).write_text("this file is for people: a reader does not parse it\n")
    data = store.load(run.path)
    assert [(t.id, t.case, t.params) for t in data.trials] == [(t.id, t.case, t.params) for t in TRIALS]
    assert data.exp.to_json() == EXP.to_json()


def test_records_round_trip_through_trials_jsonl(tmp_path):
    run = make(tmp_path)
    (trial,) = plan.trials(spec.parse("name: t\ndescription: d\ncases:\n  - {name: all lost, close_first: server, "
                                      "final_ack_loss: all}\n", "t.yaml"))
    record = analyze.trial(EXP, trial, EVENTS, PCAP)
    run.trial(record)
    run.trial(dataclasses.replace(record, trial="t001", index=1))
    assert store.records(run.path)[0].to_json() == record.to_json()
    run.rewrite_trials([record])
    assert store.records(run.path) == [record]


def test_two_runs_in_one_second_get_two_directories(tmp_path):
    a = store.RunDir.create(tmp_path, EXP, TRIALS, {})
    b = store.RunDir.create(tmp_path, EXP, TRIALS, {})
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


def test_an_event_the_catalogue_does_not_know_is_refused_naming_its_line(tmp_path):
    run = make(tmp_path)
    run.event({"trial": "t000", "src": "agent", "ev": "tw_gone", "mono": 3.0, "windows_ms": 1.0})
    with pytest.raises(RunDirError, match="events.jsonl:5: agent tw_gone has no field 'windows_ms'"):
        store.load(run.path)
