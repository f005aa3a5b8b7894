"""Expectations (`expect:` in the experiment file) held against trial results. Pure.

Each bound of each expectation is checked on every trial of the cases it
applies to: pass, fail, or no data (the trial did not measure). A case passes
when every trial of it that measured passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.figures import FROM_CAPTURE
from harness.record import FAIL, NO_DATA, PASS, Outcome, TrialResult, labeller
from harness.spec import Bound, Case, Experiment


def _show(x: float) -> str:
    """A count whole (an ISN offset of 10133311 is not 1.01333e+07), a time short."""
    return str(x) if isinstance(x, int) else f"{x:g}"


def judge(bound: Bound, record: TrialResult) -> tuple[str, float | None, str]:
    """(verdict, the value judged, why it failed or how a late poll's window let it pass) of one
    bound on a measured trial's figures."""
    x = getattr(record, bound.figure)
    under = record.shorter_than(bound.figure)
    if under is not None:  # it happened, too short for any poll to time it: only a maximum can be judged
        if bound.max is not None and under <= bound.max and bound.of is None and bound.min is None:
            return PASS, under, f"< {under:.3f}"
        return FAIL, None, f"{bound.figure} happened, shorter than {under:.3f} s (counted by the kernel, seen by no poll)"
    if bound.never:
        if x is None:
            return PASS, None, ""
        return (FAIL, None, f"{bound.figure} is {x}") if isinstance(x, str) else \
            (FAIL, x, f"{bound.figure} happened: {_show(x)}")
    if x is None:
        return FAIL, None, f"{bound.figure} never happened"
    if bound.equals is not None:
        if isinstance(bound.equals, str):  # a word: the outcome's value is a number, so the word goes in the detail
            return (PASS, None, "") if x == bound.equals else (FAIL, None, f"{bound.figure} is {x}")
        return (PASS, x, "") if x == bound.equals else (FAIL, x, f"{bound.figure} is {_show(x)}")
    if bound.of is not None:
        ref = getattr(record, bound.of)
        if ref is None:
            return FAIL, None, f"{bound.of} never happened"
        x = round(x - ref, 6)
    name = f"{bound.figure} - {bound.of}" if bound.of else bound.figure
    if _misses(bound, x, 0.0):
        slack = _late_window_s(bound, record)
        if _misses(bound, x, slack):
            return FAIL, x, f"{name} is {x:.3f}"
        return PASS, x, f"{x:.3f}, within a late poll's {slack * 1000:.0f} ms window"
    return PASS, x, ""


def _misses(bound: Bound, x: float, slack: float) -> bool:
    """Whether x misses the bound by more than slack."""
    return ((bound.within is not None and abs(x) > bound.within + slack)
            or (bound.min is not None and x < bound.min - slack) or (bound.max is not None and x > bound.max + slack))


def _late_window_s(bound: Bound, record: TrialResult) -> float:
    """How far a time the trial's polls timed may be off: its widest window, when a poll came later
    than the resolution a bound is written for (coarse); else nothing. A time seen only by a late
    poll cannot say it missed a bound by less than that poll's window, and a busy machine should
    not fail a check the kernel met."""
    named = [f for f in (bound.figure, bound.of) if f is not None]
    polled = all(f.endswith("_s") for f in named) and any(f not in FROM_CAPTURE for f in named)
    return record.window_max_ms / 1000 if polled and record.coarse and record.window_max_ms else 0.0


def outcomes(exp: Experiment, case: Case, record: TrialResult | None) -> list[Outcome]:
    """Every bound that applies to this case, judged on a trial's record (None: it did not measure)."""
    out = []
    for e in exp.expect:
        if not e.applies(case):
            continue
        for b in e.bounds:
            if record is None:
                out.append(Outcome(e.index, e.name, b.text(), NO_DATA, detail="the trial did not measure"))
            else:
                out.append(Outcome(e.index, e.name, b.text(), *judge(b, record)))
    return out


@dataclass(frozen=True)
class CaseOutcome:
    """One bound of one expectation over every trial of one case."""

    expect: int
    name: str
    check: str
    case: str
    verdict: str
    trials: list[tuple[str, str, float | None, str]]  # (trial, verdict, value, detail)


def by_case(results: list[TrialResult]) -> list[CaseOutcome]:
    """Trial outcomes gathered per expectation, bound and case, in file order."""
    groups: dict[tuple[int, str, str], list[tuple[str, Outcome]]] = {}
    label = labeller(results)
    for r in sorted(results, key=lambda r: r.index):
        for o in r.expectations:
            groups.setdefault((o.expect, o.check, label(r)), []).append((r.trial, o))
    out = []
    for (index, check, case), rows in sorted(groups.items(), key=lambda kv: kv[0][0]):
        verdicts = {o.verdict for _, o in rows}
        verdict = FAIL if FAIL in verdicts else PASS if PASS in verdicts else NO_DATA
        out.append(CaseOutcome(index, rows[0][1].name, check, case, verdict,
                               [(t, o.verdict, o.value, o.detail) for t, o in rows]))
    return out
