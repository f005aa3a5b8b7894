"""Trial records -> tables (terminal, Markdown, CSV). Reads only what a run directory holds."""

from __future__ import annotations

import csv
import io
from typing import Any

from tabulate import tabulate

from harness.analyze import FIGURES, Summary, summarize

COUNTS = {"bind_errors", "final_acks_dropped", "fin_retransmits"}


def _fmt(key: str, x: float) -> str:
    return f"{x:.0f}" if key in COUNTS else f"{x:.3f}"


def cell(key: str, s: Summary | None) -> str:
    """One value as is; several as median [min-max]; '-' when never observed."""
    if s is None:
        return "-"
    if s.n == 1 or s.min == s.max:
        return _fmt(key, s.median)
    return f"{_fmt(key, s.median)} [{_fmt(key, s.min)}-{_fmt(key, s.max)}]"


def by_case(trials: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Trials grouped by case, cases in the order they first appear."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in sorted(trials, key=lambda t: t["index"]):
        groups.setdefault(t["case"], []).append(t)
    return groups


def _shown_figures(trials: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Figures some trial has a value for (loss columns appear only with loss)."""
    return [(k, h) for k, h in FIGURES if any(t.get(k) is not None for t in trials)]


def case_rows(trials: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    figures = _shown_figures(trials)
    headers = ["case", *(h for _, h in figures), "trials ok"]
    rows = []
    for case, ts in by_case(trials).items():
        ok = [t for t in ts if t["status"] == "ok"]
        rows.append([case, *(cell(k, summarize([t.get(k) for t in ok])) for k, _ in figures),
                     f"{len(ok)}/{len(ts)}"])
    return headers, rows


def failures(trials: list[dict[str, Any]]) -> list[list[str]]:
    return [[t["trial"], t["case"], t["why"]] for t in trials if t["status"] != "ok"]


def terminal(trials: list[dict[str, Any]]) -> str:
    headers, rows = case_rows(trials)
    out = tabulate(rows, headers, tablefmt="simple", disable_numparse=True)
    failed = failures(trials)
    if failed:
        out += "\n\nFailed trials:\n" + tabulate(failed, ["trial", "case", "why"], tablefmt="simple")
    return out


def markdown(experiment: str, description: str, trials: list[dict[str, Any]]) -> str:
    headers, rows = case_rows(trials)
    parts = [
        f"# {experiment}\n",
        description.strip() + "\n",
        "Seconds after the close (t = 0: the first FIN's sender closed); "
        "several trials show median [min-max].\n",
        tabulate(rows, headers, tablefmt="github", disable_numparse=True) + "\n",
    ]
    failed = failures(trials)
    if failed:
        parts += ["## Failed trials\n",
                  tabulate(failed, ["trial", "case", "why"], tablefmt="github") + "\n"]
    return "\n".join(parts)


def stats_csv(trials: list[dict[str, Any]]) -> str:
    """One row per case and figure: n, median, min, max, stdev."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", "figure", "n", "median", "min", "max", "stdev", "trials", "failed"])
    for case, ts in by_case(trials).items():
        ok = [t for t in ts if t["status"] == "ok"]
        for key, _ in FIGURES:
            s = summarize([t.get(key) for t in ok])
            w.writerow([case, key, *(["0", "", "", "", ""] if s is None else
                                     [s.n, s.median, s.min, s.max, round(s.stdev, 6)]),
                        len(ts), len(ts) - len(ok)])
    return buf.getvalue()


def trials_csv(trials: list[dict[str, Any]]) -> str:
    """Every trial's raw values, one row each."""
    keys = ["trial", "case", "repeat", "status", "why",
            *([f"params.{k}" for k in trials[0]["params"]] if trials else []),
            *(k for k, _ in FIGURES), "tw_appear_s", "tw_gone_s", "tw_timer_restarts"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(keys)
    for t in sorted(trials, key=lambda t: t["index"]):
        w.writerow([t["params"].get(k[7:]) if k.startswith("params.") else t.get(k) for k in keys])
    return buf.getvalue()
