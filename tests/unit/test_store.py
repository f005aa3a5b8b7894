import json

import pytest

from harness import store
from harness.errors import RunDirError


def test_phases_and_roundtrip(tmp_path):
    run = store.RunDir.create(tmp_path, "exp", "name: exp\n", {"run_id": "abc"})
    assert run.path.parent == tmp_path / "exp"
    run.event({"trial": "t000", "ev": "close", "mono": 1.0})
    run.trial({"trial": "t000", "index": 0, "status": "ok"})
    assert run.capture("t000", b"pcap") == "captures/t000.pcap"
    manifest, trials, events = store.load(run.path)
    assert manifest["run_id"] == "abc" and manifest["version"] == store.FORMAT
    assert trials == [{"trial": "t000", "index": 0, "status": "ok"}]
    assert events[0]["ev"] == "close"
    assert (run.path / "experiment.yaml").read_text() == "name: exp\n"


def test_two_runs_in_one_second_get_two_directories(tmp_path):
    a = store.RunDir.create(tmp_path, "exp", "", {})
    b = store.RunDir.create(tmp_path, "exp", "", {})
    assert a.path != b.path


def test_unknown_version_is_refused_with_advice(tmp_path):
    run = store.RunDir.create(tmp_path, "exp", "", {})
    doc = json.loads((run.path / store.MANIFEST).read_text())
    doc["version"] = 99
    (run.path / store.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match="version 99; this harness reads"):
        store.load(run.path)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunDirError, match="not a run directory"):
        store.load(tmp_path)
