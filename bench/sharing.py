"""Does sharing a lab change what is measured? Benchmarked by hand (not by CI): python bench/sharing.py

The same 40 trials of one case run twice, at the same time: in a lab each (isolation: trial) and in
one shared lab (the default, each trial on its own port, closing on its own random phase of the
timer wheel's grid). Once with no loss, once with every final ACK lost. For TIME_WAIT and for the
plain and SO_REUSEADDR re-binds: each run's median and spread, and the two-sample Mann-Whitney test
(harness/ranktest.py). Every figure comes from runs made now, on this machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runner import ROOT, build_images  # bench/runner.py, beside this file
from tabulate import tabulate

from harness import ranktest

N = 40
CASES = {"no loss": "final_ack_loss: 0", "every final ACK lost": "final_ack_loss: all"}
FIGURES = ("time_wait_s", "rebind_plain_s", "rebind_reuseaddr_s")
SPEC = """name: {name}
description: {n} trials of one case, {how}
repeat: {n}
isolation: {isolation}
cases:
  - {{name: server first, close_first: server, {loss}}}
"""


def spread(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=4)
    return f"{statistics.median(xs):.3f} [IQR {q[0]:.3f}-{q[2]:.3f}, {min(xs):.3f}-{max(xs):.3f}]"


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="harness-sharing-"))
    build_images()
    procs = {}
    for case, loss in CASES.items():
        for isolation, how in (("trial", "a lab each"), ("case", "in one shared lab")):
            name = f"{'loss' if 'all' in loss else 'noloss'}_{isolation}"
            spec = tmp / f"{name}.yaml"
            spec.write_text(SPEC.format(name=name, n=N, how=how, isolation=isolation, loss=loss))
            procs[case, isolation] = subprocess.Popen(
                [sys.executable, "-m", "harness", "run", str(spec), "--jobs", str(N), "--results", str(tmp),
                 "--json", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    docs = {}
    for key, p in procs.items():
        out, err = p.communicate()
        if p.returncode not in (0, 1):
            sys.exit(f"{key}: exit {p.returncode}\n{err[-3000:]}")
        docs[key] = json.loads(out)
    rows = []
    for case in CASES:
        for figure in FIGURES:
            a, b = ([t[figure] for t in docs[case, iso]["trials"] if t["status"] == "ok" and t[figure] is not None]
                    for iso in ("trial", "case"))
            p_value = ranktest.p_value(a, b)
            rows.append([case, figure, f"{len(a)}: {spread(a)}", f"{len(b)}: {spread(b)}", f"{p_value:.2f}",
                         "agree" if p_value >= 0.05 else "DIFFER"])
    print(f"harness sharing benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.uname().release}, "
          f"{os.cpu_count()} cores, {N} trials each, the four runs at once\n")
    print(tabulate(rows, ["case", "figure", "a lab each: n: median [IQR, range] s", "one shared lab", "Mann-Whitney p",
                          ""], tablefmt="github"))
    print(f"\nrun directories: {tmp}")


if __name__ == "__main__":
    main()
