"""A study-sized run, benchmarked by hand (not by CI): python bench/study.py

(a) experiments/lost_ack.yaml with repeat: 20 (200 trials, 40 of them with every final ACK lost),
    all at once on an engine that already has 25 networks of its own (made here from Docker's
    default address pools, and removed after): wall time / the kernel's part of its longest trial.
(b) Measurement under that load: the widest window around any reported time, and how late the
    agents' polls started (every poll more than 20 ms late is an event of its own, so the share of
    such polls bounds the 99th percentile).
(c) With every close on one phase of the timer-wheel grid (--close-phase): the no-loss TIME_WAIT
    of 20 trials at once against one trial alone.
(d) What was left (containers, networks), the harness's peak memory, and how long `harness
    report` takes on the 200-trial run directory and on a 10-trial one.

Every figure comes from runs made now, on this machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from runner import ROOT, build_images, harness  # bench/runner.py, beside this file
from tabulate import tabulate

from bench import close_phase, wheel_grid  # bench/bench.py, beside this file
from harness import store
from harness.lab import engine

TARGETS = {"a": 1.5, "window_ms": 11.0, "p99_ms": 20.0, "c_ms": 20.0}
OWN_NETWORKS = 25
OWN_LABEL = "io.harness.bench=1"  # on those networks
LATE_MS = 20.0  # the agent logs every poll later than this (late_poll)
NO_LOSS = """name: {name}
description: server closes first, no loss, {n} at once
repeat: {n}
cases:
  - {{close_first: server}}
"""


def polls(run_dir: str) -> tuple[int, list[float]]:
    """(polls made, lateness in ms of each poll later than LATE_MS) over every trial of a run."""
    events = store.load(Path(run_dir)).events
    total = sum(e.get("polls", 0) for e in events if e.get("ev") == "poll_stats")
    return total, sorted((e["late_ms"] for e in events if e.get("ev") == "late_poll"), reverse=True)


def p99(total: int, late: list[float]) -> str:
    """The 99th percentile of poll lateness, when more than 1% of polls were logged late; else
    the bound the logging gives."""
    k = total // 100
    return f"{late[k]:.1f} ms" if len(late) > k else f"<= {LATE_MS:.0f} ms"


def show(rows: list[list]) -> None:
    print(f"harness study benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.uname().release}, "
          f"{os.cpu_count()} cores\n")
    print(tabulate([[r[0], r[1], r[2], {True: "met", False: "MISSED"}.get(r[3], "")] for r in rows],
                   ["figure", "measured", "target", ""], tablefmt="github"), flush=True)


def main() -> None:
    client = engine.connect()
    tmp = Path(tempfile.mkdtemp(prefix="harness-study-"))
    build_images()
    rows = []
    try:
        engine.create_networks(client, "harness-bench-own", OWN_NETWORKS, OWN_LABEL)
        spec = tmp / "lost_ack.yaml"
        spec.write_text((ROOT / "experiments" / "lost_ack.yaml").read_text().replace("repeat: 1", "repeat: 20"))
        ran = harness("run", str(spec), "--jobs", "200", "--results", str(tmp), ok=(0, 1))
        study, wall, rss = ran.doc, ran.wall, ran.rss
        trials = study["trials"]
        ok = [t for t in trials if t["status"] == "ok"]
        longest = max(t["observed_s"] for t in ok)
        windows = max(t["window_max_ms"] for t in ok)
        total, late = polls(study["run_dir"])
        rows += [
            ["(a) trials measured", f"{len(ok)} / {len(trials)}", "200 / 200", len(ok) == len(trials) == 200],
            ["(a) wall / longest trial", f"{wall:.0f} s / {longest:.1f} s = {wall / longest:.2f}",
             f"<= {TARGETS['a']}", wall / longest <= TARGETS["a"]],
            ["(b) widest window of a reported time", f"{windows:.1f} ms", f"<= {TARGETS['window_ms']:.0f} ms",
             windows <= TARGETS["window_ms"]],
            ["(b) polls later than 20 ms / all polls", f"{len(late)} / {total} ({100 * len(late) / total:.2f} %)", "", ""],
            ["(b) 99th percentile of poll lateness", p99(total, late), f"<= {TARGETS['p99_ms']:.0f} ms",
             len(late) <= total // 100],
            ["(b) latest poll", f"{max(t['poll_late_max_ms'] for t in ok):.1f} ms", "", ""],
        ]

        show(rows)
        # (c): 20 at once against one alone, every close on one phase of the wheel's grid.
        found = wheel_grid([study])
        if found is None:
            sys.exit("TIME_WAIT ends share none of the known timer-wheel grids")
        phase = close_phase(*found)
        alone, crowd = tmp / "alone.yaml", tmp / "crowd.yaml"
        alone.write_text(NO_LOSS.format(name="alone", n=1))
        crowd.write_text(NO_LOSS.format(name="crowd", n=20))
        one = harness("run", str(alone), "--close-phase", phase, "--results", str(tmp), ok=(0, 1)).doc
        many = harness("run", str(crowd), "--jobs", "20", "--close-phase", phase, "--results", str(tmp), ok=(0, 1)).doc
        ref = one["trials"][0]["time_wait_s"]
        tws = [t["time_wait_s"] for t in many["trials"]]
        worst = max(abs(x - ref) for x in tws) * 1000
        rows += [["(c) TIME_WAIT alone / 20 at once, one grid phase",
                  f"{ref:.3f} s / {statistics.median(tws):.3f} [{min(tws):.3f}-{max(tws):.3f}] s",
                  f"all within {TARGETS['c_ms']:.0f} ms", worst <= TARGETS["c_ms"]]]

        # (d)
        left = engine.count_labelled(client)  # of every run
        rows += [["(d) containers / networks left", f"{left[0]} / {left[1]}", "0 / 0", left == (0, 0)],
                 ["(d) peak memory of the harness", f"{rss / 1024:.0f} MiB", "", ""]]
        for label, run_dir in (("200", study["run_dir"]), ("10", None)):
            if run_dir is None:
                ten = harness("run", str(ROOT / "experiments" / "lost_ack.yaml"), "--results", str(tmp), ok=(0, 1)).doc
                run_dir = ten["run_dir"]
            took = harness("report", run_dir, json=False).wall
            limit = 60 if label == "200" else 10
            rows.append([f"(d) harness report, {label} trials", f"{took:.1f} s", f"<= {limit} s", took <= limit])
    finally:
        engine.remove_networks(client, OWN_LABEL)

    show(rows)
    print(f"\n(c) every close at --close-phase {phase}; run directories: {tmp}")


if __name__ == "__main__":
    main()
