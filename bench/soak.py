"""Soak test of the harness itself, run by hand (not by CI): python bench/soak.py

1. 200 trials in one run, 25 at a time (eight waves of short trials: the client closes first, with
   0 to 3 final ACKs lost). While it runs, the harness process's open file descriptors and
   resident memory are sampled every second: they must not grow from wave to wave.
2. After it: the run's containers and networks left (must be 0), the host's network interfaces and
   iptables rules against before (Docker adds both per trial network: must be back where they
   were), and trials that did not measure (must be 0).
3. Stops: a run stopped with SIGINT, SIGTERM and SIGHUP while its trials wait, and one whose
   engine stops answering (a paused socket in front of it): how long until the harness exited,
   and what it left.

Every figure comes from runs made now, on this machine. Run directories go to a temporary folder.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from runner import ROOT, build_images, start  # bench/runner.py, beside this file
from tabulate import tabulate

from harness.lab import engine
from tests.integration.conftest import run_id_of, wait_for_line
from tests.integration.test_stopping import EngineProxy

SOAK = """name: soak
description: short trials, many of them, to look for leaks
repeat: 50
isolation: trial
matrix:
  close_first: [client]
  final_ack_loss: [0, 1, 2, 3]
"""
STOP = ROOT / "tests" / "integration" / "experiments" / "stop.yaml"
WAIT = ROOT / "tests" / "integration" / "experiments" / "wait.yaml"


def host_counts() -> dict[str, int]:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return {"network interfaces": len(links.splitlines()), "iptables rules": sum(
        1 for line in rules.splitlines() if line.startswith("-A"))}


def sample(pid: int, out: list[tuple[float, int, int]], done: threading.Event) -> None:
    start = time.monotonic()
    while not done.wait(1.0):
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            return
        out.append((time.monotonic() - start, fds, rss))


def left(client: Any, run_id: str) -> str:
    """The run's containers / networks still on the engine (client: engine.connect())."""
    containers, networks = engine.count_labelled(client, run_id)
    return f"{containers} / {networks}"


def stop_once(client: Any, tmp: Path, sig: signal.Signals) -> list[str]:
    proc = start("run", str(STOP), "--results", str(tmp))
    run_id = run_id_of(wait_for_line(proc, ": waiting", timeout=120))
    sent = time.monotonic()
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    return [f"stopped by {sig.name} while trials wait", f"{time.monotonic() - sent:.2f} s",
            f"exit {proc.returncode}", left(client, run_id)]


def engine_gone(client: Any, tmp: Path) -> list[str]:
    proxy = EngineProxy(tmp / "engine.sock")
    proc = start("run", str(WAIT), "--results", str(tmp), env={**os.environ, "DOCKER_HOST": f"unix://{proxy.path}"})
    run_id = run_id_of(wait_for_line(proc, ": waiting", timeout=120))
    proxy.paused.set()
    paused = time.monotonic()
    proc.communicate(timeout=180)
    took = time.monotonic() - paused
    leftover = left(client, run_id)
    engine.remove_labelled(client, run_id)
    return ["engine stops answering while trials wait", f"{took:.2f} s", f"exit {proc.returncode}",
            f"{leftover} (the engine cannot remove them: `harness clean` once it answers)"]


def main() -> None:
    client = engine.connect()
    tmp = Path(tempfile.mkdtemp(prefix="harness-soak-"))
    spec = tmp / "soak.yaml"
    spec.write_text(SOAK)
    build_images()
    before = host_counts()

    samples: list[tuple[float, int, int]] = []
    done = threading.Event()
    started = time.monotonic()
    proc = start("run", str(spec), "--json", "--jobs", "25", "--results", str(tmp))
    threading.Thread(target=sample, args=(proc.pid, samples, done), daemon=True).start()
    # Sampled while trials run: the report written after them (a process pool, matplotlib's
    # fonts) is not a wave, and would look like growth in the last quarter.
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)
    reader.start()
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("writing the report"):
            done.set()
    done.set()
    reader.join()
    proc.wait()
    out, err = stdout[0], "".join(lines)
    wall = time.monotonic() - started
    if proc.returncode not in (0, 4):
        sys.exit(f"soak run failed (exit {proc.returncode}):\n{err[-3000:]}")
    doc = json.loads(out)
    run_id = json.loads((Path(doc["run_dir"]) / "manifest.json").read_text())["run_id"]
    after = host_counts()
    failed = [t for t in doc["trials"] if t["status"] != "ok"]

    quarter = max(1, len(samples) // 4)
    first, last = samples[:quarter], samples[-quarter:]
    rows = [
        ["trials run / did not measure", f"{len(doc['trials'])} / {len(failed)}", "200 / 0"],
        ["wall time, 25 at a time", f"{wall:.0f} s", ""],
        ["containers / networks of the run left", left(client, run_id), "0 / 0"],
        *[[f"host {k}, before / after", f"{before[k]} / {after[k]}", "equal"] for k in before],
        ["open fds of the harness, first / last quarter (max)",
         f"{max(s[1] for s in first)} / {max(s[1] for s in last)}", "no growth"],
        ["resident memory of the harness, first / last quarter (median)",
         f"{statistics.median(s[2] for s in first) / 1024:.0f} / {statistics.median(s[2] for s in last) / 1024:.0f} MiB",
         "no growth"],
    ]
    print(f"harness soak, {time.strftime('%Y-%m-%d')}, {os.uname().release}, {os.cpu_count()} cores\n")
    print(tabulate(rows, ["figure", "measured", "must be"], tablefmt="github"))
    stops = [stop_once(client, tmp, sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
    stops.append(engine_gone(client, tmp))
    print()
    print(tabulate(stops, ["stop", "signal to exit", "exit code", "containers / networks left"], tablefmt="github"))
    if failed:
        print("\ntrials that did not measure:", *(f"{t['trial']}: {t['why']}" for t in failed[:10]), sep="\n  ")
    print(f"\nrun directories: {tmp}")


if __name__ == "__main__":
    main()
