"""Hostile and unusual input, as a new user or an attacker would give it: every case exits 2
with one line, no traceback, quickly and in bounded memory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import tracemalloc
from pathlib import Path

import pytest

from harness import cli, store

from .lost_ack_trial import EVENTS, EXPERIMENT, TRIAL

BASE = "name: t\ndescription: d\n"
CASES = "cases: [{close_first: server}]\n"


def laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nname: *a{levels - 1}\n"


SPECS = {
    "alias expansion": laughs(),
    "deep nesting": BASE + "cases: " + "[" * 5000 + "]" * 5000 + "\n",
    "millions of trials": BASE + "repeat: 1000\nmatrix:\n" + "".join(
        f"  {k}: [{v}]\n" for k, v in (("close_first", "server, client"), ("server_reuseaddr", "true, false"),
                                       ("restart_reuseaddr", "true, false"), ("family", "ipv4, ipv6"),
                                       ("client_close", "close, shutdown"),
                                       ("final_ack_loss", ", ".join(str(i) for i in range(1000))))),
    "a name too long for a folder": "name: " + "n" * 300 + "\ndescription: d\n" + CASES,
    "a message with NUL": BASE + 'message: "a\\0b"\n' + CASES,
    "a message too long": BASE + "message: " + "é" * 150 + "\n" + CASES,
    "duplicate case names": BASE + "cases:\n  - {name: x, close_first: server}\n  - {name: x, close_first: client}\n",
    "duplicate keys": BASE + "repeat: 2\nrepeat: 3\n" + CASES,
    "YAML 1.1 on": BASE + "cases: [{server_reuseaddr: on}]\n",
    "a date": BASE + "repeat: 2026-11-24\n" + CASES,
    "1_000": BASE + "repeat: 1_000\n" + CASES,
    "ANSI escape in a case name": BASE + 'cases: [{name: "\\e[31mred\\e[0m"}]\n',
    "bidi override in a case name": BASE + 'cases: [{name: "abc\\u202edcba"}]\n',
    "control character in a key": BASE + '"col\\x1bour": 1\n' + CASES,
    "huge integer": BASE + "repeat: 999999999999999999999999999999\n" + CASES,
    "not a number": BASE + "max_wait_s: .nan\n" + CASES,
    "infinity": BASE + "max_wait_s: .inf\n" + CASES,
    "description too long": "name: t\ndescription: " + "d" * 20000 + "\n" + CASES,
    "a list": "- 1\n- 2\n",
    "a scalar": "hello\n",
    "YAML error": BASE + "cases: [unclosed\n",
    "tab indentation": BASE + "cases:\n\t- {}\n",
    "unhashable key": BASE + "? [a, b]\n: 1\n" + CASES,
    "a custom tag": BASE + "repeat: !!python/object:os.system ls\n" + CASES,
    "an expectation for no case": BASE + CASES + "expect: [{where: {family: ipv6}, time_wait_s: null}]\n",
    "binary": "\x89PNG\r\n\x1a\n\x00\x00",
}


def one_line_exit_2(argv: list[str], capsys) -> str:
    tracemalloc.start()
    signal.alarm(30)  # a hang fails the test instead of the suite
    started = time.monotonic()
    try:
        code = cli.main(argv)
    finally:
        signal.alarm(0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("harness: "), err
    assert "Traceback" not in err and "\x1b" not in err and "\u202e" not in err
    assert time.monotonic() - started < 10  # "a few seconds"; the first import of matplotlib counts
    assert peak < 200 * 2**20
    return err


@pytest.mark.parametrize("name", SPECS)
def test_hostile_experiment_files(name, tmp_path, capsys):
    spec = tmp_path / "exp.yaml"
    spec.write_bytes(SPECS[name].encode("utf-8", "surrogateescape"))
    one_line_exit_2(["plan", str(spec)], capsys)


def test_yaml_values_are_echoed_as_written(tmp_path, capsys):
    spec = tmp_path / "exp.yaml"
    spec.write_text(SPECS["YAML 1.1 on"])
    assert "got 'on'; allowed: true, false" in one_line_exit_2(["plan", str(spec)], capsys)
    spec.write_text(SPECS["a date"])
    assert "got '2026-11-24'" in one_line_exit_2(["plan", str(spec)], capsys)


SPECIAL = {
    "a FIFO": lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1],
    "/dev/zero": lambda d: Path("/dev/zero"),
    "a directory": lambda d: d,
    "over a MiB": lambda d: (d / "big.yaml", (d / "big.yaml").write_text(BASE + "#" * (2 << 20)))[0],
    "not UTF-8": lambda d: (d / "latin1.yaml", (d / "latin1.yaml").write_bytes(b"name: caf\xe9\n"))[0],
}


@pytest.mark.parametrize("name", SPECIAL)
def test_special_files_are_refused(name, tmp_path, capsys):
    one_line_exit_2(["plan", str(SPECIAL[name](tmp_path))], capsys)


@pytest.mark.parametrize("args", [
    ["--jobs", "9999999999"], ["--jobs", "0"], ["--jobs", "-3"], ["--jobs", "x"],
    ["--close-phase", "inf,0"], ["--close-phase", "nan,0"], ["--close-phase", "1e-9,0"],
    ["--close-phase", "2,\x1b[2J"], ["--threshold-typo", "1"],
])
def test_absurd_command_line_values(args, capsys):
    one_line_exit_2(["run", "experiments/restart.yaml", "--dry-run", *args], capsys)


def run_dir(tmp_path: Path) -> Path:
    run = store.RunDir.create(tmp_path, EXPERIMENT, [TRIAL], {"experiment": "t", "run_id": "abc"})
    for e in EVENTS:
        run.event({"trial": "t000", **e})
    return run.path


def damage_event(field: str, value) -> callable:
    def damage(p: Path) -> None:
        lines = (p / "events.jsonl").read_text().splitlines()
        doc = json.loads(lines[5])
        doc[field] = value
        lines[5] = json.dumps(doc)
        (p / "events.jsonl").write_text("\n".join(lines) + "\n")
    return damage


DAMAGE = {
    "no manifest": lambda p: (p / "manifest.json").unlink(),
    "manifest not JSON": lambda p: (p / "manifest.json").write_text("{"),
    "manifest a list": lambda p: (p / "manifest.json").write_text("[]"),
    "manifest of another version": lambda p: (p / "manifest.json").write_text(
        '{"format": "harness-manifest", "version": 7}'),
    "close_phase not a pair": lambda p: (p / "manifest.json").write_text(
        '{"format": "harness-manifest", "version": 1, "close_phase": "x"}'),
    "no events": lambda p: (p / "events.jsonl").unlink(),
    "a bad line in the middle": lambda p: (p / "events.jsonl").write_text(
        (p / "events.jsonl").read_text().replace('"ev": "listening"', '"ev": listening')),
    "a wrong-typed time": damage_event("mono", "soon"),
    "a boolean time": damage_event("mono", True),
    "an event without its name": damage_event("ev", None),
    "states not strings": damage_event("states", [1, 2]),
    "no experiment.yaml": lambda p: (p / "experiment.yaml").unlink(),
    "settings damaged": lambda p: (p / "manifest.json").write_text(
        (p / "manifest.json").read_text().replace('"poll_ms": 10', '"poll_ms": "x", "extra": 1')),
    "trials damaged": lambda p: (p / "manifest.json").write_text(
        (p / "manifest.json").read_text().replace('"case": "all lost"', '"kase": "all lost"')),
    "an event the catalogue does not know": damage_event("ev", "tw_gon"),
    "non-UTF-8 bytes": lambda p: (p / "events.jsonl").write_bytes(
        (p / "events.jsonl").read_bytes() + b'{"trial": "t000", "ev": "x\xff"}\n'),
    "not a directory": lambda p: (shutil.rmtree(p), p.write_text("x")),
    "trials.jsonl a folder": lambda p: ((p / "trials.jsonl").unlink(), (p / "trials.jsonl").mkdir()),
}


@pytest.mark.parametrize("name", DAMAGE)
def test_damaged_run_directories_are_one_line_and_nothing_is_written(name, tmp_path, capsys):
    path = run_dir(tmp_path)
    DAMAGE[name](path)
    before = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
    err = one_line_exit_2(["report", str(path)], capsys)
    assert str(path) in err
    assert (sorted(p.name for p in path.iterdir()) if path.is_dir() else None) == before


def test_a_run_cut_off_mid_write_still_reports(tmp_path, capsys):
    path = run_dir(tmp_path)
    with open(path / "events.jsonl", "a") as f:
        f.write('{"trial": "t000", "src": "agent", "ev": "tw_g')
    assert cli.main(["report", str(path)]) == 0
    err = capsys.readouterr().err
    assert "last line cut off" in err and "Traceback" not in err
    assert (path / "report.html").is_file()
