"""Events of one trial -> its figures; figures of many trials -> statistics. Pure."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]

# The figures a trial yields, in table order: (key, heading).
FIGURES = (
    ("time_wait_s", "TIME_WAIT (s)"),
    ("rebind_plain_s", "bind() plain (s)"),
    ("rebind_reuseaddr_s", "bind() SO_REUSEADDR (s)"),
    ("restart_s", "restart up (s)"),
    ("bind_errors", "bind() errors"),
    ("final_acks_dropped", "ACKs dropped"),
    ("fin_retransmits", "FIN retransmits"),
)


def _first(events: list[Event], ev: str, **match: Any) -> Event | None:
    return next((e for e in events if e.get("ev") == ev
                 and all(e.get(k) == v for k, v in match.items())), None)


def close_time(events: list[Event], close_first: str) -> float | None:
    """t = 0: when the side that closes first closed (SIGINT sent, or close() called)."""
    e = _first(events, "close", side=close_first)
    return e["mono"] if e else None


def trial_figures(events: list[Event], close_first: str) -> dict[str, Any]:
    """Seconds after the close at which each thing happened, from the agent's and client's events."""
    t0 = close_time(events, close_first)

    def since(e: Event | None) -> float | None:
        return round(e["mono"] - t0, 6) if e and t0 is not None else None

    appear, gone, done = _first(events, "tw_appear"), _first(events, "tw_gone"), _first(events, "done")
    restarts = [e for e in events if e.get("ev") == "restart_fail"]
    polls = _first(events, "poll_stats") or {}
    return {
        "tw_appear_s": since(appear),
        "tw_gone_s": since(gone),
        "time_wait_s": round(gone["mono"] - appear["mono"], 6) if appear and gone else None,
        "tw_timer_restarts": sum(1 for e in events if e.get("ev") == "tw_timer_restart"),
        "rebind_plain_s": since(_first(events, "bind_ok", reuseaddr=False)),
        "rebind_reuseaddr_s": since(_first(events, "bind_ok", reuseaddr=True)),
        "restart_s": since(_first(events, "restart_up")),
        "bind_errors": sum(1 for e in restarts if "bind() error" in e.get("stderr", "")),
        "restart_failures_other": sum(1 for e in restarts if "bind() error" not in e.get("stderr", "")),
        # From the close until the port was free again: the kernel's part of the trial.
        "observed_s": since(done),
        # How late the agent's latest poll started, and the widest window between
        # two polls in which a change reported above happened: its error bound.
        "poll_late_max_ms": polls.get("late_max_ms"),
        "window_max_ms": max((e["window_ms"] for e in events if "window_ms" in e), default=None),
    }


def agent_outcome(events: list[Event]) -> tuple[str, str]:
    """("ok", "") when the agent saw everything through, else ("failed", why)."""
    for e in events:
        if e.get("src") != "agent":
            continue
        if e.get("ev") == "done":
            return "ok", ""
        if e.get("ev") == "timeout":
            return "failed", f"not over after {e.get('after_s')} s (max_wait_s)"
        if e.get("ev") == "error":
            return "failed", f"agent: {e.get('what')}"
    return "failed", "the agent ended without a result"


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    min: float
    max: float
    stdev: float


def summarize(values: list[float | int | None]) -> Summary | None:
    """Statistics of the values that were measured; None when none were."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None
    return Summary(len(xs), statistics.median(xs), min(xs), max(xs),
                   statistics.stdev(xs) if len(xs) > 1 else 0.0)
