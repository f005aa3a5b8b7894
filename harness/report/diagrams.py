"""What each figure shows, as plain data drawn from a trial's result and events. Pure.

plots.py only draws these; the tests check them. Times are seconds after the
close (t = 0), on the clock every container shares.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, cast

from harness.analyze import close_time
from harness.events import AGENT, Ev
from harness.record import Segment, TrialResult, by_case, none_ran

Event = dict[str, Any]
# Segments closer together than this share a burst of rows; a longer pause
# between two of them is drawn as a break in the axis, with its length.
BREAK_S = 0.1
SLANT = 0.55  # rows an arrow drops from its sender to its receiver, as in the book's drawings


def _other(side: str) -> str:
    return "client" if side == "server" else "server"


# --- the sequence diagram ---------------------------------------------------------


@dataclass(frozen=True)
class Arrow:
    row: float  # where the arrow starts, in rows down from the top; it ends SLANT rows lower
    t: float  # seconds after the close, as captured
    sender: str
    kind: str  # "fin", "fin again", "ack", "final ack", "final ack again", "rst"
    label: str  # flags and relative SEQ/ACK numbers
    dropped: bool  # ends in a cross at the receiver's ingress
    answered: bool = False  # ends at the receiver's ingress, which sent a RST back (final_ack_reset)


@dataclass(frozen=True)
class Break:
    row: float  # the row between the two segments it separates
    seconds: float


@dataclass(frozen=True)
class Sequence:
    active: str  # the side that closed first
    arrows: list[Arrow]
    breaks: list[Break]
    end_row: float
    # The agent's view of the server socket: TIME_WAIT from..to (rows and t), and each
    # restart of its timer, drawn where the FIN that restarted it arrived: (row, t).
    time_wait: tuple[float, float, float, float] | None = None
    restarts: list[tuple[float, float]] = field(default_factory=list)
    captured_at: str = "client"


def _kind(what: str) -> str:
    if "RST" in what:
        return "rst"
    if what.startswith("final ACK"):
        return "final ack again" if "again" in what else "final ack"
    if "FIN retransmission" in what:
        return "fin again"
    if what.endswith("FIN"):
        return "fin"
    return "ack"


def _label(seg: Segment) -> str:
    numbers = [f"seq={seg.rel_seq}" if seg.rel_seq is not None else f"seq={seg.seq}"]
    if seg.ack is not None:
        numbers.append(f"ack={seg.rel_ack}" if seg.rel_ack is not None else f"ack={seg.ack}")
    return f"{seg.flags}  {' '.join(numbers)}".strip()


class RowAxis:
    """Times -> rows: one row per instant, a break (two rows) for each pause over BREAK_S."""

    def __init__(self, times: list[float]):
        self.times: list[float] = []
        self.rows: list[float] = []
        self.breaks: list[Break] = []
        row = 0.0
        for i, t in enumerate(sorted(times)):
            if i:
                gap = t - self.times[-1]
                row += 2.0 if gap > BREAK_S else 1.0
                if gap > BREAK_S:
                    self.breaks.append(Break(row - 1.0, gap))
            self.times.append(t)
            self.rows.append(row)

    def row(self, t: float) -> float:
        """Where t falls: interpolated between the instants around it, within the axis."""
        if not self.times:
            return 0.0
        i = bisect.bisect_right(self.times, t)
        if i == 0:
            return self.rows[0]
        if i == len(self.times):
            return self.rows[-1]
        t0, t1, r0, r1 = self.times[i - 1], self.times[i], self.rows[i - 1], self.rows[i]
        return r0 if t1 == t0 else r0 + (r1 - r0) * (t - t0) / (t1 - t0)


def sequence(r: TrialResult, events: list[Event]) -> Sequence:
    """The close, segment by segment as captured, with the server's TIME_WAIT as the agent saw it."""
    segs = [s for s in r.timeline if s.t is not None]
    active = r.params.close_first
    t0 = close_time(events, active)
    tw = (r.tw_appear_s, r.tw_gone_s) if r.tw_appear_s is not None and r.tw_gone_s is not None else None
    axis = RowAxis([s.t for s in segs] + ([tw[1]] if tw else []))
    arrows = [Arrow(axis.row(s.t), s.t, s.sender, _kind(s.what), _label(s), bool(s.dropped), bool(s.reset))
              for s in segs]
    restart_ts = [e["mono"] - t0 for e in events if t0 is not None and e.get("ev") == Ev.TW_TIMER_RESTART]
    fins = [a for a in arrows if a.sender == "client" and a.kind in ("fin", "fin again")]  # into the server
    restarts = []
    for t in restart_ts:  # the agent sees a restart at its next poll, after the FIN's arrival
        fin = next((a for a in reversed(fins) if a.t <= t), None)
        restarts.append((fin.row + SLANT if fin else axis.row(t), t))
    time_wait = (axis.row(tw[0]), axis.row(tw[1]), tw[0], tw[1]) if tw else None
    end_row = max([a.row for a in arrows] + ([time_wait[1]] if time_wait else []), default=0.0)
    return Sequence(active, arrows, axis.breaks, end_row, time_wait, restarts)


# --- the socket timeline ------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class Attempts:
    """Something tried over and over until it worked: bind(), or restarting the server."""

    failing: Span | None  # from the first failure to the success (or the end)
    ok_at: float | None
    failures: int


@dataclass(frozen=True)
class SocketTimeline:
    end: float
    states: list[Span]  # the server socket's state as the agent saw it ("gone" once it was)
    timer: list[tuple[float, float]]  # (t, seconds left) as the kernel reported its TIME_WAIT timer
    countdown: list[tuple[float, float]]  # the same timer running down between two readings
    timer_restarts: list[tuple[float, float]]
    bind_plain: Attempts
    bind_reuseaddr: Attempts
    restart: Attempts
    fins: list[float]  # arrivals of the passive closer's FIN, each copy
    drops: list[float]  # final ACK copies dropped


def countdown(readings: list[tuple[float, float]], gone: float | None) -> list[tuple[float, float]]:
    """The timer between the kernel's readings: it runs down at 1 s per s until the next one
    (higher again when a FIN restarted it), and the last one runs down until TIME_WAIT ended."""
    out: list[tuple[float, float]] = []
    ends = [t for t, _ in readings[1:]] + ([gone] if gone is not None else [])
    for (t, left), until in zip(readings, ends):
        out += [(t, left), (until, max(left - (until - t), 0.0))]
    return out


def _attempts(events: list[Event], since: Any, fail: Any, ok: Any, end: float, count: int | None = None) -> Attempts:
    """From the first failure to the success; `count` the failures, where the agent only counted them."""
    fails = [e for e in events if fail(e)]
    good = next((e for e in events if ok(e)), None)
    ok_at = since(good) if good else None
    if count is None:
        count = good.get("failures", len(fails)) if good and "failures" in good else len(fails)
    span = Span(since(fails[0]), ok_at if ok_at is not None else end, "failing") if fails else None
    return Attempts(span, ok_at, count)


def socket_timeline(r: TrialResult, events: list[Event]) -> SocketTimeline | None:
    """The server socket's life after the close, from the agent's polls and the capture."""
    t0 = close_time(events, r.params.close_first)
    if t0 is None:
        return None

    def since(e: Event) -> float:
        return round(e["mono"] - t0, 6)

    agent = [e for e in events if e.get("src") == AGENT and "mono" in e]
    done = next((e for e in agent if e.get("ev") in (Ev.DONE, Ev.TIMEOUT)), None)
    end = since(done) if done else max((since(e) for e in agent), default=0.0)

    states: list[Span] = []
    changes = [(since(e), (e.get("states") or ["gone"])[0]) for e in agent if e.get("ev") == Ev.SOCKETS]
    for (t, state), nxt in zip(changes, changes[1:] + [(end, "")]):
        states.append(Span(max(t, 0.0), nxt[0], state))
    timer_events = (Ev.TW_APPEAR, Ev.TW_TIMER, Ev.TW_TIMER_RESTART)
    timer = [(since(e), e["expires_ms"] / 1000) for e in agent if e.get("ev") in timer_events]
    passive = _other(r.params.close_first)
    return SocketTimeline(
        end=end,
        states=states,
        timer=timer,
        countdown=countdown(timer, r.tw_gone_s),
        timer_restarts=[(since(e), e["expires_ms"] / 1000) for e in agent if e.get("ev") == Ev.TW_TIMER_RESTART],
        bind_plain=_attempts(agent, since, lambda e: e.get("ev") == Ev.BIND_FAIL and not e.get("reuseaddr"),
                             lambda e: e.get("ev") == Ev.BIND_OK and not e.get("reuseaddr"), end),
        bind_reuseaddr=_attempts(agent, since, lambda e: e.get("ev") == Ev.BIND_FAIL and e.get("reuseaddr"),
                                 lambda e: e.get("ev") == Ev.BIND_OK and e.get("reuseaddr"), end),
        restart=_attempts(agent, since, lambda e: e.get("ev") == Ev.RESTART_FAIL,
                          lambda e: e.get("ev") == Ev.RESTART_UP, end, r.bind_errors + r.restart_failures_other),
        fins=[s.t for s in r.timeline if s.t is not None and s.sender == passive and _kind(s.what) in ("fin", "fin again")],
        drops=[s.t for s in r.timeline if s.t is not None and s.dropped],
    )


# --- cases side by side -------------------------------------------------------------

CASE_FIGURES = (
    ("time_wait_s", "TIME_WAIT"),
    ("rebind_plain_s", "bind() without SO_REUSEADDR"),
    ("rebind_reuseaddr_s", "bind() with SO_REUSEADDR"),
    ("restart_s", "restarted server up"),
)


@dataclass(frozen=True)
class CasePoints:
    case: str
    values: dict[str, list[float]]  # figure -> each ok trial's value (never-happened left out)
    never: dict[str, int]  # figure -> ok trials where it never happened
    shorter: dict[str, list[float]]  # figure -> upper bounds, where it happened too briefly to time


def case_points(results: list[TrialResult]) -> list[CasePoints]:
    """Per case that ran, in first-seen order, every measured trial's value of each compared figure."""
    out = []
    for case, rs in by_case(results).items():
        if none_ran(rs):
            continue
        ok = [r for r in rs if r.ok]
        under = {k: [b for r in ok if (b := r.shorter_than(k)) is not None] for k, _ in CASE_FIGURES}
        out.append(CasePoints(
            case,
            {k: [getattr(r, k) for r in ok if getattr(r, k) is not None] for k, _ in CASE_FIGURES},
            {k: sum(1 for r in ok if getattr(r, k) is None) - len(under[k]) for k, _ in CASE_FIGURES},
            under,
        ))
    return out


def representative(results: list[TrialResult]) -> TrialResult:
    """The case's median trial by the kernel's part of it (its lower median), measured ones first."""
    ok = sorted((r for r in results if r.ok and r.observed_s is not None), key=lambda r: cast(float, r.observed_s))
    return ok[(len(ok) - 1) // 2] if ok else min(results, key=lambda r: r.index)
