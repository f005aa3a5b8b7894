"""Engines as Docker names them, trials planned over several, and the kernel as a dimension."""

import hashlib
import json
from pathlib import Path

import pytest

from harness import plan, prepare, spec, store
from harness.errors import UsageError
from harness.lab import engines
from harness.record import TrialResult, by_case, labeller
from harness.report import tables


def store_context(config: Path, name: str, host: str, tls: bool = True) -> Path:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))
    certs = config / "contexts" / "tls" / digest / "docker"
    if tls:
        certs.mkdir(parents=True)
        for f in ("ca.pem", "cert.pem", "key.pem"):
            (certs / f).write_text("x")
    return certs


@pytest.fixture
def config(tmp_path, monkeypatch):
    for var in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    return tmp_path


def test_a_context_from_the_clis_store(config):
    certs = store_context(config, "debian-6.1", "tcp://127.0.0.1:55505")
    ref = engines.resolve("debian-6.1")
    assert ref == engines.EngineRef("debian-6.1", "tcp://127.0.0.1:55505", certs, True)
    env = ref.env()
    assert env["DOCKER_HOST"] == "tcp://127.0.0.1:55505" and env["DOCKER_CERT_PATH"] == str(certs)
    assert env["DOCKER_TLS_VERIFY"] == "1" and "DOCKER_CONTEXT" not in env


def test_the_environments_engine_as_the_cli_finds_it(config, monkeypatch):
    assert engines.resolve(None) == engines.EngineRef("default", engines.LOCAL)
    store_context(config, "lab", "tcp://127.0.0.1:1", tls=False)
    (config / "config.json").write_text(json.dumps({"currentContext": "lab"}))
    assert engines.resolve(None).host == "tcp://127.0.0.1:1"  # `docker context use lab`
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    assert engines.resolve(None) == engines.EngineRef("default", "unix:///run/other.sock")  # DOCKER_HOST wins
    assert engines.resolve("unix:///x.sock") == engines.EngineRef("unix:///x.sock", "unix:///x.sock")


def test_an_unknown_context_is_one_line(config):
    with pytest.raises(UsageError, match="^--engine nope: no such Docker context"):
        engines.resolve("nope")


EXP = spec.parse("name: t\ndescription: d\nrepeat: 2\ncases:\n  - {name: long, final_ack_loss: all}\n"
                 "  - {name: short, close_first: client}\n", "t.yaml")


def test_each_engine_runs_every_trial():
    ts = plan.on_engines(plan.trials(EXP), ["host", "lab"], "each")
    assert [(t.id, t.case, t.repeat, t.engine) for t in ts] == [
        ("t000", "long", 0, "host"), ("t001", "short", 0, "host"), ("t002", "long", 1, "host"),
        ("t003", "short", 1, "host"), ("t004", "long", 0, "lab"), ("t005", "short", 0, "lab"),
        ("t006", "long", 1, "lab"), ("t007", "short", 1, "lab")]


def test_shard_spreads_the_trials_longest_first():
    ts = plan.on_engines(plan.trials(EXP), ["host", "lab"], "shard")
    assert [t.index for t in ts] == [0, 1, 2, 3]
    engine_of = {t.id: t.engine for t in ts}
    assert engine_of["t000"] != engine_of["t002"]  # the two long ones go to different engines
    assert plan.on_engines(plan.trials(EXP), ["only"], "shard") == plan.on_engines(plan.trials(EXP), ["only"], "each")


def result(i, case, engine, kernel, tw):
    return TrialResult(f"t{i:03d}", i, case, 0, {"close_first": "server"}, status="ok", engine=engine, kernel=kernel,
                       time_wait_s=tw, window_max_ms=10.1 if i else 31.0, coarse=i == 0)


def test_the_kernel_is_a_dimension_of_the_results():
    rs = [result(0, "c", "host", "6.18", 60.5), result(1, "c", "lab", "6.1.0-56-cloud-amd64", 61.2)]
    assert list(by_case(rs)) == ["c [6.18]", "c [6.1.0-56-cloud-amd64]"]
    assert labeller(rs[:1])(rs[0]) == "c"  # one engine: no need to say which
    same_kernel = [result(0, "c", "a", "6.18", 60.5), result(1, "c", "b", "6.18", 61.2)]
    assert list(by_case(same_kernel)) == ["c [a]", "c [b]"]
    _headers, rows = tables.case_rows(rs)
    assert rows[0][-1] == "1/1 (1 coarse)"
    quality = {q["engine"]: q for q in tables.engine_quality(rs)}
    assert quality["host"]["window_max_ms"] == 31.0 and quality["host"]["coarse_trials"] == ["t000"]


def test_the_manifest_records_each_engines_facts(tmp_path):
    facts = {"host": {"host": "unix:///var/run/docker.sock", "kernel": "6.18", "sysctls": {}},
             "lab": {"host": "tcp://127.0.0.1:55505", "kernel": "6.1.0-56-cloud-amd64", "sysctls": {}}}
    ready = prepare.Prepared(engines={}, facts=facts)
    ts = plan.on_engines(plan.trials(EXP), ["host", "lab"], "each")
    m = prepare.manifest(EXP, "abc", ready, 4, "each", None, 7)
    assert m["kernel"] == "6.18" and m["engines"] == facts and m["engine_mode"] == "each"
    trial = store.load(store.RunDir.create(tmp_path, EXP, ts, m).path).trials[4]
    assert (trial.id, trial.case, trial.repeat, trial.engine) == ("t004", "long", 0, "lab")
