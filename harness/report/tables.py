"""Trial results -> tables (terminal, Markdown, CSV)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from tabulate import tabulate

from harness.analyze import Summary, summarize
from harness.expect import FAIL, NO_DATA, PASS
from harness.expect import by_case as expectations_by_case
from harness.figures import COUNTS, FIGURES, FLAGS, PORTS, SHOWN_FOR, SHOWN_FOR_OWN_SERVER, WORDS
from harness.record import NOT_APPLICABLE, TrialResult, by_case, labeller, none_ran
from harness.spec import Params

DEFAULTS = Params().to_json()

NOTE = "Seconds after the close (t = 0: the first FIN's sender closed); several trials show median [min-max]."


def _fmt(key: str, x: float) -> str:
    return f"{x:.0f}" if key in COUNTS or key in PORTS else f"{x:.3f}"


def cell(key: str, s: Summary | None) -> str:
    """One value as is; several as median [min-max]; '-' when never observed."""
    if s is None:
        return "-"
    if s.n == 1 or s.min == s.max:
        return _fmt(key, s.median)
    return f"{_fmt(key, s.median)} [{_fmt(key, s.min)}-{_fmt(key, s.max)}]"


def _cell(key: str, trials: list[TrialResult]) -> str:
    """A case's figure: numbers as cell() shows them, and "< x" for trials where it happened too
    briefly for a poll to time it (TrialResult.shorter_than); yes/no and names as they are ("-": none)."""
    values = [getattr(t, key) for t in trials]
    if key in FLAGS or key in WORDS:
        words = dict.fromkeys(("yes" if v else "no") if key in FLAGS else v for v in values if v is not None)
        return " / ".join(words) or "-"
    text = cell(key, summarize(values))
    bounds = [b for t in trials if (b := t.shorter_than(key)) is not None]
    if not bounds:
        return text
    under = f"< {max(bounds):.3f}"
    return under if text == "-" else f"{text}; {len(bounds)} {under}"



def _shown_figures(trials: list[TrialResult]) -> list[tuple[str, str]]:
    """Figures some trial has a value for (loss columns appear only with loss); those of
    record.SHOWN_FOR where some case sets their variable."""
    def shown(k: str) -> bool:
        if k in SHOWN_FOR_OWN_SERVER:
            return any(t.server_program for t in trials)
        if k in SHOWN_FOR:
            return any(t.params.to_json().get(v, DEFAULTS[v]) != DEFAULTS[v] for t in trials for v in SHOWN_FOR[k])
        return any(getattr(t, k) is not None or t.shorter_than(k) is not None for t in trials)
    return [(k, h) for k, h in FIGURES if shown(k)]


def case_rows(trials: list[TrialResult]) -> tuple[list[str], list[list[str]]]:
    figures = _shown_figures(trials)
    headers = ["case", *(h for _, h in figures), "trials ok"]
    rows = []
    for case, ts in by_case(trials).items():
        ok = [t for t in ts if t.ok]
        coarse = sum(1 for t in ok if t.coarse)
        if none_ran(ts):  # its kernel lacks a sysctl it sets
            rows.append([case, *("n/a" for _ in figures), "not applicable"])
            continue
        rows.append([case, *(_cell(k, ok) for k, _ in figures),
                     f"{len(ok)}/{len(ts)}" + (f" ({coarse} coarse)" if coarse else "")])
    return headers, rows


RESTART_HEADERS = ["trial", "case", "attempt", "exit status", "last line", "port held by"]


def restart_failure_rows(trials: list[TrialResult]) -> list[list[str]]:
    """Each distinct way a user's server's restart failed, per trial (the keeper says what held the port)."""
    return [[t.trial, t.case, str(f.attempt), "-" if f.status is None else str(f.status), f.stderr,
             f.port_held_by or "-"]
            for t in sorted(trials, key=lambda t: t.index) if t.server_program for f in t.restart_failures]


ENGINE_HEADERS = ["engine", "kernel", "fault backend", "trials", "widest window (ms)", "latest poll (ms)",
                  "coarse trials"]


def engine_quality(trials: list[TrialResult]) -> list[dict[str, Any]]:
    """Per engine, how finely its agents could time things: the widest window around a reported
    change, how late the latest poll started, and the trials whose window was coarser than asked."""
    out = []
    for name in dict.fromkeys(t.engine for t in trials):
        ts = [t for t in trials if t.engine == name]
        windows = [t.window_max_ms for t in ts if t.window_max_ms is not None]
        late = [t.poll_late_max_ms for t in ts if t.poll_late_max_ms is not None]
        out.append({"engine": name, "kernel": ts[0].kernel, "trials": len(ts),
                    "fault_backend": ", ".join(sorted({t.backend for t in ts if t.backend != "none"})) or "none",
                    "window_max_ms": max(windows, default=None), "poll_late_max_ms": max(late, default=None),
                    "coarse_trials": [t.trial for t in ts if t.coarse]})
    return out


def engine_rows(trials: list[TrialResult]) -> list[list[str]]:
    return [[q["engine"] or "-", q["kernel"] or "-", q["fault_backend"], str(q["trials"]),
             "-" if q["window_max_ms"] is None else f"{q['window_max_ms']:.1f}",
             "-" if q["poll_late_max_ms"] is None else f"{q['poll_late_max_ms']:.1f}",
             ", ".join(q["coarse_trials"]) or "none"] for q in engine_quality(trials)]


def failures(trials: list[TrialResult]) -> list[list[str]]:
    label = labeller(trials)
    return [[t.trial, label(t), t.why] for t in trials if t.failed]


def not_applicable(trials: list[TrialResult]) -> list[list[str]]:
    """The cases not run on some engine, and why (its kernel lacks a sysctl they set), once each."""
    label = labeller(trials)
    return list({label(t): [label(t), t.why] for t in trials if t.status == NOT_APPLICABLE}.values())


EXPECT_HEADERS = ["", "expectation", "check", "case", "values"]


def _number(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}" if float(v).is_integer() else f"{v:.3f}"


def values_text(rows: list[tuple[str, str, float | None, str]], limit: int = 4) -> str:
    """Each trial's value (why, where it failed), failures first; short enough for a table cell."""
    shown = sorted(rows, key=lambda r: r[1] != FAIL)[:limit]
    text = ", ".join(f"{t} {d or _number(v)}" for t, _, v, d in shown)
    return text + (f", ... ({len(rows)} trials)" if len(rows) > len(shown) else "")


def expectation_rows(trials: list[TrialResult]) -> list[list[str]]:
    """One row per expectation, check and case: PASS, FAIL or NO DATA, and the values judged."""
    return [[o.verdict.upper(), f"expect[{o.expect}] {o.name}", o.check, o.case, values_text(o.trials)]
            for o in expectations_by_case(trials)]


def expectation_summary(trials: list[TrialResult]) -> list[str]:
    """One line per check over all its cases, with the cases that broke it: for the terminal."""
    checks: dict[tuple[int, str], list] = {}
    for o in expectations_by_case(trials):
        checks.setdefault((o.expect, o.check), []).append(o)
    lines = []
    for (index, check), cases in checks.items():
        failed = [o for o in cases if o.verdict == FAIL]
        verdict = FAIL if failed else PASS if any(o.verdict == PASS for o in cases) else NO_DATA
        line = f"{verdict.upper():7} expect[{index}] {check}  ({len(cases) - len(failed)}/{len(cases)} cases)"
        lines += [line] + [f"          {o.case}: {values_text(o.trials, 3)}" for o in failed]
    return lines


def terminal(trials: list[TrialResult]) -> str:
    headers, rows = case_rows(trials)
    out = tabulate(rows, headers, tablefmt="simple", disable_numparse=True)
    if len({t.engine for t in trials}) > 1:
        out += "\n\nEngines:\n" + tabulate(engine_rows(trials), ENGINE_HEADERS, tablefmt="simple",
                                              disable_numparse=True)
    checks = expectation_summary(trials)
    if checks:
        out += "\n\nExpectations (the experiment file's expect:):\n" + "\n".join(checks)
    failed = failures(trials)
    if failed:
        out += "\n\nFailed trials:\n" + tabulate(failed, ["trial", "case", "why"], tablefmt="simple")
    skipped = not_applicable(trials)
    if skipped:
        out += "\n\nNot applicable (not run):\n" + tabulate(skipped, ["case", "why"], tablefmt="simple")
    return out


def markdown(experiment: str, description: str, trials: list[TrialResult]) -> str:
    headers, rows = case_rows(trials)
    parts = [
        f"# {experiment}\n",
        description.strip() + "\n",
        NOTE + "\n",
        tabulate(rows, headers, tablefmt="github", disable_numparse=True) + "\n",
    ]
    checks = expectation_rows(trials)
    if checks:
        parts += ["## Expectations\n", tabulate(checks, EXPECT_HEADERS, tablefmt="github",
                                                 disable_numparse=True) + "\n"]
    failed = failures(trials)
    if failed:
        parts += ["## Failed trials\n",
                  tabulate(failed, ["trial", "case", "why"], tablefmt="github") + "\n"]
    skipped = not_applicable(trials)
    if skipped:
        parts += ["## Not applicable (not run)\n", tabulate(skipped, ["case", "why"], tablefmt="github") + "\n"]
    return "\n".join(parts)


def stats_csv(trials: list[TrialResult]) -> str:
    """One row per case and figure: n, median, min, max, stdev."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", "figure", "n", "median", "min", "max", "stdev", "trials", "failed"])
    for case, ts in by_case(trials).items():
        ok = [t for t in ts if t.ok]
        for key in (k for k, _ in FIGURES if k not in WORDS):
            s = summarize([getattr(t, key) for t in ok])
            w.writerow([case, key, *(["0", "", "", "", ""] if s is None else
                                     [s.n, s.median, s.min, s.max, round(s.stdev, 6)]),
                        sum(t.status != NOT_APPLICABLE for t in ts), sum(t.failed for t in ts)])
    return buf.getvalue()


def trials_csv(trials: list[TrialResult]) -> str:
    """Every trial's raw values, one row each."""
    keys = ["trial", "case", "repeat", "engine", "kernel", "status", "why", "coarse",
            *([f"params.{k}" for k in trials[0].params.to_json()] if trials else []),
            *(k for k, _ in FIGURES), "time_wait_max_s", "tw_appear_s", "tw_gone_s", "tw_timer_restarts", "same_port_syns",
            "server_sysctls", "client_sysctls"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(keys)
    for t in sorted(trials, key=lambda t: t.index):
        values = [t.params.to_json().get(k[7:]) if k.startswith("params.") else getattr(t, k) for k in keys]
        w.writerow([json.dumps(v) if isinstance(v, dict) else v for v in values])  # sysctls as JSON
    return buf.getvalue()
