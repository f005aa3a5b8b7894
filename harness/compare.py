"""Two runs of an experiment compared, case by case and figure by figure. Pure.

The threshold of "same" is never finer than the instrument: the widest poll
window either run's agents reported around a change, and, for figures that
end with a timewait socket (a TIME_WAIT on either side, a FIN_WAIT2 that
tcp_fin_timeout ends), the kernel's timer-wheel grid (timerwheel.py), at most
an eighth of the socket's life, unless both runs closed on the same phase of
it (--close-phase). With 5 or more
trials on each side a Mann-Whitney rank test (ranktest.py) decides whether a difference
beyond the threshold is real; with fewer, the two ranges must not overlap.
A figure that never happened counts as below any value (no TIME_WAIT is
shorter than one). Labels (an errno, an exit status, yes or no) are judged
by what they name: same, or changed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from harness import ranktest, timerwheel
from harness.analyze import Summary, summarize
from harness.errors import UsageError
from harness.figures import COUNTS, FIGURES, INFERRED, LABELS, PORTS, TW_ISN_OFFSET, UNJUDGED, UNSEEN_IS_BRIEF
from harness.record import NOT_APPLICABLE, TrialResult, by_case

SAME, REGRESSED, IMPROVED, INCONCLUSIVE, CHANGED = "same", "regressed", "improved", "inconclusive", "changed"
COMPARED = tuple(k for k, _ in FIGURES if k not in LABELS | UNJUDGED)  # the figures compare judges by size
# The labels it judges by what they name (an errno, an exit status, yes or no): not ports, which
# are fresh each trial, nor inferences, and an ISN offset only as the kernel's rule reads it (_named).
NAMED = tuple(k for k, _ in FIGURES if k in LABELS and k not in PORTS | INFERRED)
TIMES = "times"  # --threshold times=...: every figure in seconds at once
RANK_TEST_MIN = 5  # trials on each side before the rank test decides
ALPHA = 0.01
TW_BOUND_S = 0.1  # a figure within this of a timewait socket's end ends with it (the wheel's rounding)
WHEEL_SLACK = 1 / 8  # the most the timer wheel rounds a timer up, as a share of its length
TIMEWAIT_LEN_S = 59.0  # TCP_TIMEWAIT_LEN (60 s) less a poll's worth: a TIME_WAIT its timer ended
# What tells two runs' environments apart: (label, path in the manifest).
ENV_KEYS = (("kernel", "kernel"), ("OS", "os"), ("CPUs", "cpus"), ("engine", "engine_version"),
            ("engine API", "api_version"), ("harness", "harness_version"), ("fault backend", "fault_backend"),
            ("close phase", "close_phase"))


@dataclass(frozen=True)
class Threshold:
    figure: str
    value: float
    relative: bool  # a fraction of the baseline's median

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """FIGURE=SECONDS (or a count) or FIGURE=PERCENT%, e.g. time_wait_s=0.5 or restart_s=10%;
        `times` for every figure in seconds (two machines of different speeds, say)."""
        figure, sep, value = text.partition("=")
        names = (*COMPARED, TIMES)
        if not sep or figure not in names:
            raise UsageError(f"--threshold {text[:60]!r}: want FIGURE=VALUE or FIGURE=PERCENT%, "
                             f"FIGURE one of {', '.join(names)}")
        relative = value.endswith("%")
        try:
            number = float(value[:-1] if relative else value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0 or number > 1e6:
            raise UsageError(f"--threshold {text[:60]!r}: the value must be a number from 0 to 1e6")
        return cls(figure, number / 100 if relative else number, relative)


@dataclass(frozen=True)
class Side:
    """One run, as compare reads it."""

    name: str
    manifest: dict[str, Any]
    results: list[TrialResult]


@dataclass(frozen=True)
class Row:
    case: str
    figure: str
    base: Summary | None
    new: Summary | None
    diff: float | None  # new median - base median
    threshold: float
    why_threshold: str  # what set it
    test: str  # how the verdict was reached
    verdict: str
    base_named: str | None = None  # a label's values, for NAMED figures (base and new are then None)
    new_named: str | None = None


@dataclass
class Comparison:
    env: list[tuple[str, str, str]]  # (what, baseline, new) for each difference
    rows: list[Row] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)  # cases one run has and the other lacks
    only_new: list[str] = field(default_factory=list)
    # (case, "baseline" or "new", why): a case one run's kernel could not run (it lacks a sysctl)
    not_applicable: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def regressed(self) -> list[Row]:
        """What fails a CI job: a figure that regressed, and a label that changed."""
        return [r for r in self.rows if r.verdict in (REGRESSED, CHANGED)]


def _get(manifest: dict[str, Any], path: str) -> str:
    v = manifest.get(path)
    return "-" if v is None else str(v)


def env_diff(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What differs between two runs' environments, as their manifests recorded it."""
    out = [(label, _get(a, k), _get(b, k)) for label, k in ENV_KEYS if _get(a, k) != _get(b, k)]
    for group, label in (("sysctls", "sysctl "), ("images", "image ")):
        da = a.get(group) or {}
        db = b.get(group) or {}
        if group == "images":
            da, db = da.get("ids") or {}, db.get("ids") or {}
        for k in sorted(set(da) | set(db)):
            if da.get(k) != db.get(k):
                out.append((label + k, str(da.get(k) or "-"), str(db.get(k) or "-")))  # "": the kernel has none
    return out


def _ends(results: list[TrialResult]) -> list[float]:
    return [r.close_mono + r.tw_gone_s for r in results if r.close_mono is not None and r.tw_gone_s is not None]


def _floor(figure: str, base: list[TrialResult], new: list[TrialResult], same_phase: bool,
           wheel: float) -> tuple[float, str]:
    """What the instrument and the kernel cannot tell apart for this figure of this case."""
    if figure in COUNTS:
        return 0.5, "counts differ by whole numbers"
    trials = base + new
    window = max((r.window_max_ms or 0.0 for r in trials), default=0.0) / 1000
    floor, why = window, f"poll window {window * 1000:.1f} ms"
    # The wheel rounds a timer up by at most an eighth of its length (a level's granularity is an
    # eighth of where the level starts); a socket something else ended (a reuse, a RST) is not its.
    rounding = max((min(wheel, length * WHEEL_SLACK) for r in trials if (x := getattr(r, figure)) is not None
                    for end, length in _timer_ended(r) if abs(x - end) <= _near(r)), default=0.0)
    if not same_phase and rounding > floor:
        floor, why = rounding, f"timer wheel {rounding:.3f} s"
    return floor, why


def _near(r: TrialResult) -> float:
    """How close to a timewait socket's end a figure ends with it: a poll (a paced try, up to a
    second apart, included) and then TW_BOUND_S."""
    return TW_BOUND_S + (r.window_max_ms or 0.0) / 1000


def _timer_ended(r: TrialResult) -> list[tuple[float, float]]:
    """(end, length) of each timewait socket of the trial its timer ended, all on one wheel: a
    TIME_WAIT, either side's, that lasted its TCP_TIMEWAIT_LEN (one a reuse or a RST ended is
    shorter), and a FIN_WAIT2, which tcp_fin_timeout ends (a timewait socket too)."""
    return [(end, length) for end, length, full in ((r.tw_gone_s, r.time_wait_s, TIMEWAIT_LEN_S),
                                                    (r.fin_wait2_gone_s, r.fin_wait2_s, 0.0),
                                                    (r.client_tw_gone_s, r.client_tw_s, TIMEWAIT_LEN_S))
            if end is not None and length is not None and length >= full]


def _verdict(a: list[float | None], b: list[float | None], threshold: float) -> tuple[float | None, str, str]:
    """(difference of medians, how decided, verdict); never-happened (None) is below every value."""
    xa = [-math.inf if v is None else v for v in a]
    xb = [-math.inf if v is None else v for v in b]
    sa, sb = sorted(xa), sorted(xb)
    ma, mb = statistics.median(sa), statistics.median(sb)
    if ma == mb:
        return (0.0 if math.isfinite(ma) else None), "medians equal", SAME
    diff = mb - ma
    shown = diff if math.isfinite(diff) else None
    if math.isfinite(diff) and abs(diff) <= threshold:
        return shown, "within the threshold", SAME
    worse = REGRESSED if diff > 0 else IMPROVED
    if len(xa) >= RANK_TEST_MIN and len(xb) >= RANK_TEST_MIN:
        p = ranktest.p_value(xa, xb)
        return shown, f"Mann-Whitney U p={p:.2g}", worse if p < ALPHA else INCONCLUSIVE
    separated = sb[0] - sa[-1] > threshold if diff > 0 else sa[0] - sb[-1] > threshold
    return shown, "ranges " + ("apart" if separated else "overlap"), worse if separated else INCONCLUSIVE


def _value(r: TrialResult, figure: str) -> float | None:
    """A figure, or for one that happened too briefly for any poll to time, its upper bound (or 0)."""
    v = getattr(r, figure)
    if v is None and figure in UNSEEN_IS_BRIEF:
        return 0.0
    return r.shorter_than(figure) if v is None else v


def _named(figure: str, v: Any) -> str:
    if v is None:
        return "-"
    if figure == "same_port_isn_offset":
        return f"the TIME_WAIT's (+{TW_ISN_OFFSET})" if v == TW_ISN_OFFSET else "a fresh one"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _label_row(case: str, figure: str, ta: list[TrialResult], tb: list[TrialResult]) -> Row | None:
    """Same when both runs' trials named the same values, changed when no value is in both,
    inconclusive when some are (one odd trial is not a change); None when neither named one."""
    va, vb = (sorted({_named(figure, getattr(r, figure)) for r in ts}) for ts in (ta, tb))
    if not va or not vb or va == vb == ["-"]:
        return None
    if va == vb:
        verdict, test = SAME, "values equal"
    elif set(va).isdisjoint(vb):
        verdict, test = CHANGED, "values differ"
    else:
        verdict, test = INCONCLUSIVE, "values overlap"
    return Row(case, figure, None, None, None, 0.0, "a label: equal or not", test, verdict,
               " | ".join(va), " | ".join(vb))


def compare(base: Side, new: Side, thresholds: dict[str, Threshold]) -> Comparison:
    groups_a, groups_b = by_case(base.results), by_case(new.results)
    cases_a, cases_b = list(groups_a), list(groups_b)
    same_phase = base.manifest.get("close_phase") is not None and \
        base.manifest.get("close_phase") == new.manifest.get("close_phase")
    wheel = max(timerwheel.resolution(_ends(base.results)), timerwheel.resolution(_ends(new.results)))
    out = Comparison(env_diff(base.manifest, new.manifest),
                     only_base=[c for c in cases_a if c not in cases_b],
                     only_new=[c for c in cases_b if c not in cases_a])
    for case in (c for c in cases_a if c in cases_b):
        for side, groups in (("baseline", groups_a), ("new", groups_b)):
            skipped = next((r for r in groups[case] if r.status == NOT_APPLICABLE), None)
            if skipped is not None:
                out.not_applicable.append((case, side, skipped.why))
        ta, tb = ([r for r in groups[case] if r.ok] for groups in (groups_a, groups_b))
        for figure in COMPARED:
            if not ta or not tb or all(getattr(r, figure) is None for r in ta + tb):
                continue
            va, vb = [_value(r, figure) for r in ta], [_value(r, figure) for r in tb]
            floor, why = _floor(figure, ta, tb, same_phase, wheel)
            user = thresholds.get(figure) or (thresholds.get(TIMES) if figure not in COUNTS else None)
            if user is not None:
                base_median = summarize(va)
                asked = user.value * abs(base_median.median) if user.relative and base_median else user.value
                if asked > floor:
                    floor, why = asked, f"--threshold {user.figure}" + (f"={user.value:.0%}" if user.relative else "")
            diff, test, verdict = _verdict(va, vb, floor)
            out.rows.append(Row(case, figure, summarize(va), summarize(vb), diff, floor, why, test, verdict))
        out.rows += [row for figure in NAMED if (row := _label_row(case, figure, ta, tb)) is not None]
    return out
