"""Study-sized runs, benchmarked by hand (not by CI): python bench/study.py [--only 200|1000]

experiments/lost_ack.yaml with repeat: 20 (200 trials) and repeat: 100 (1,000 trials), each with
the harness's defaults (no --jobs, nothing tuned), from warm images:
(a) trials measured, and wall time / the kernel's part of the longest trial;
(b) measurement under that load: the widest window around any reported time, and how late the
    agents' polls started (every poll more than 20 ms late is an event of its own, so the share of
    such polls bounds the 99th percentile); and what the machine took meanwhile: the CPU time a
    VM's host took (steal), and the stalls in which a CPU ran nothing of user space (stalls.py),
    and which windows over the target those stalls explain;
(c) what was left (containers, networks), the harness's peak memory, and how long `harness report`
    takes on the run directory.

Every figure comes from runs made now, on this machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from runner import ROOT, build_images, harness  # bench/runner.py, beside this file
from stalls import LATE_S, Sampler  # bench/stalls.py
from tabulate import tabulate

from harness import store
from harness.lab import engine

STUDIES = {200: {"ratio": 1.2, "mib": None, "report_s": None}, 1000: {"ratio": 1.5, "mib": 500, "report_s": 60}}
WINDOW_MS, P99_MS = 11.0, 20.0
LATE_MS = 20.0  # the agent logs every poll later than this (late_poll)


def polls(events: list[dict]) -> tuple[int, list[float]]:
    """(polls made, lateness in ms of each poll later than LATE_MS) over every trial of a run."""
    total = sum(e.get("polls", 0) for e in events if e.get("ev") == "poll_stats")
    return total, sorted((e["late_ms"] for e in events if e.get("ev") == "late_poll"), reverse=True)


def windows(events: list[dict], cpus: Sampler) -> tuple[int, int, float]:
    """Over every window of a reported time: how many were wider than WINDOW_MS, how many of those
    a CPU's stall explains (it took all of the window beyond WINDOW_MS), and the widest of the rest
    (that stall's window aside)."""
    over = explained = 0
    widest = 0.0
    for e in events:
        if "window_ms" not in e or "mono" not in e:
            continue
        ms = e["window_ms"]
        by_stall = ms > WINDOW_MS and ms - cpus.stalled(e["mono"] - ms / 1000, e["mono"]) * 1000 <= WINDOW_MS
        over += ms > WINDOW_MS
        explained += by_stall
        if not by_stall:
            widest = max(widest, ms)
    return over, explained, widest


def p99(total: int, late: list[float]) -> tuple[str, bool]:
    """The 99th percentile of poll lateness, when more than 1% of polls were logged late; else
    the bound the logging gives."""
    k = total // 100
    return (f"{late[k]:.1f} ms", late[k] <= P99_MS) if len(late) > k else (f"<= {LATE_MS:.0f} ms", True)


def steal_s() -> float:
    """CPU time the VM's host has taken from this machine's CPUs since boot (/proc/stat's steal;
    0 on bare metal): a vCPU the host does not run holds every poll queued on it."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8]) / os.sysconf("SC_CLK_TCK")


def study(n: int, tmp: Path) -> list[list]:
    target = STUDIES[n]
    spec = tmp / f"lost_ack_{n}.yaml"
    spec.write_text((ROOT / "experiments" / "lost_ack.yaml").read_text().replace("repeat: 1\n", f"repeat: {n // 10}\n"))
    stolen = steal_s()
    with Sampler() as cpus:
        ran = harness("run", str(spec), "--results", str(tmp), ok=(0, 1))
    stolen = steal_s() - stolen
    trials = ran.doc["trials"]
    ok = [t for t in trials if t["status"] == "ok"]
    longest = max(t["observed_s"] for t in ok)
    window = max(t["window_max_ms"] for t in ok)
    events = store.load(Path(ran.doc["run_dir"])).events
    total, late = polls(events)
    over, explained, design = windows(events, cpus)
    stalls = (f"{len(cpus.stalls)}, {sum(x.end - x.start for x in cpus.stalls):.2f} s in all, longest "
              f"{max((x.end - x.start for x in cpus.stalls), default=0) * 1000:.0f} ms" if not cpus.why
              else f"not measured ({cpus.why})")
    late99, late_met = p99(total, late)
    left = engine.count_labelled(engine.connect())
    took = harness("report", ran.doc["run_dir"], json=False, ok=(0, 1)).wall
    rss = ran.rss / 1024
    return [
        [f"{n}: trials measured", f"{len(ok)} / {len(trials)}", f"{n} / {n}", len(ok) == len(trials) == n],
        [f"{n}: wall / longest trial", f"{ran.wall:.0f} s / {longest:.1f} s = {ran.wall / longest:.2f}",
         f"<= {target['ratio']}", ran.wall / longest <= target["ratio"]],
        [f"{n}: widest window of a reported time", f"{window:.1f} ms", f"<= {WINDOW_MS:.0f} ms", window <= WINDOW_MS],
        [f"{n}: windows over {WINDOW_MS:.0f} ms / of them, a CPU's stall explains",
         f"{over} / {explained}" if not cpus.why else f"{over} / not measured", "", ""],
        [f"{n}: widest window but those", f"{design:.1f} ms" if not cpus.why else "not measured",
         f"<= {WINDOW_MS:.0f} ms", design <= WINDOW_MS if not cpus.why else ""],
        [f"{n}: stalls of a CPU (no real-time task ran, > {LATE_S * 1000:.0f} ms)", stalls, "", ""],
        [f"{n}: polls later than 20 ms / all polls", f"{len(late)} / {total} ({100 * len(late) / total:.2f} %)", "", ""],
        [f"{n}: 99th percentile of poll lateness", late99, f"<= {P99_MS:.0f} ms", late_met],
        [f"{n}: latest poll", f"{max(t['poll_late_max_ms'] for t in ok):.1f} ms", "", ""],
        [f"{n}: CPU taken by the VM's host (steal)", f"{stolen:.2f} s ({100 * stolen / ran.wall / (os.cpu_count() or 1):.2f} %)", "", ""],
        [f"{n}: containers / networks left", f"{left[0]} / {left[1]}", "0 / 0", left == (0, 0)],
        [f"{n}: peak memory of the harness", f"{rss:.0f} MiB", f"< {target['mib']} MiB" if target["mib"] else "",
         rss < target["mib"] if target["mib"] else ""],
        [f"{n}: harness report", f"{took:.1f} s", f"< {target['report_s']} s" if target["report_s"] else "",
         took < target["report_s"] if target["report_s"] else ""],
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", type=int, choices=sorted(STUDIES))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="harness-study-"))
    build_images()
    rows = []
    for n in [args.only] if args.only else sorted(STUDIES):
        rows += study(n, tmp)
    print(f"harness study benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.uname().release}, "
          f"{os.cpu_count()} cores, default options\n")
    print(tabulate([[r[0], r[1], r[2], {True: "met", False: "MISSED"}.get(r[3], "")] for r in rows],
                   ["figure", "measured", "target", ""], tablefmt="github"))
    print(f"\nrun directories: {tmp}")


if __name__ == "__main__":
    main()
