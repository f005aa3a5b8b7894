"""When the TIME_WAITs still running will end, and so when a lab may go without disturbing them.

A lab's removal (its containers and network, and the kernel's clean-up of their namespaces) takes
the engine and the kernel a couple of seconds of CPU; the agents of another lab timing their ends
on a tick of the timer wheel then saw them up to 18 ms late (docs/benchmarks.md). Each agent says
where its TIME_WAIT's timer stands (tw_appear, tw_timer, tw_timer_restart): it ends on the first
tick of the wheel's grid after that (the host's ticks), unless a FIN restarts it. The agent finds
its bracket's tick the same way (find_end_tick in images/src/tw_agent.c, from its soonest timer and
a jiffy early); here the latest timer's tick is near enough to keep a removal clear of it.
"""

from __future__ import annotations

import threading
from typing import Any

from harness.events import AGENT, Ev
from harness.stopping import Flag
from harness.timerwheel import next_tick

REMOVAL_S = 2.5  # a lab's removal here, from its capture's stop (2.4 s, 2026-12-07)
MARGIN_S = 0.05  # past a tick: its agents' polls around it, and a jiffy or two of a late softirq
WAIT_MOST_S = 10.0  # the longest a lab waits for a quiet moment, holding its network meanwhile
_TIMER = (Ev.TW_APPEAR, Ev.TW_TIMER, Ev.TW_TIMER_RESTART)
_OVER = (Ev.TW_GONE, Ev.DONE, Ev.TIMEOUT, Ev.CUT, Ev.ERROR)


def quiet_from(now: float, ends: list[float], span: float = REMOVAL_S, margin: float = MARGIN_S,
               most: float = WAIT_MOST_S) -> float:
    """The first moment from now after which no end comes within span; if that is more than `most`
    away (labs ending one after another), just after the last of those ends within `most`."""
    t = now
    for end in sorted(ends):
        if end + margin <= t:
            continue
        if end > t + span or end + margin > now + most:
            break
        t = end + margin
    return t


class Ends:
    """The ends of the TIME_WAITs the run's agents watch, on one engine's host (its ticks known)."""

    def __init__(self, ticks: dict[str, Any]):
        self._ticks = ticks
        self._ends: dict[str, float] = {}
        self._on_host: set[str] = set()  # trials whose agent runs on this host's kernel (its clock event)
        self._lock = threading.Lock()

    def seen(self, trial_id: str, event: dict[str, Any]) -> None:
        """A trial's event: its agent's reading of the timer, or its end."""
        if event.get("src") != AGENT:
            return
        ev = event.get("ev")
        with self._lock:
            if ev == Ev.CLOCK and event.get("wheel_ticks"):
                self._on_host.add(trial_id)
            elif ev in _TIMER and trial_id in self._on_host:
                expiry = event.get("mono", 0.0) + event.get("expires_ms", 0) / 1000
                self._ends[trial_id] = next_tick(expiry, self._ticks)
            elif ev in _OVER:
                self._ends.pop(trial_id, None)

    def forget(self, trial_ids: list[str]) -> None:
        """Trials that are over, whatever their agents said last (a failed one's TIME_WAIT goes
        with its lab)."""
        with self._lock:
            for t in trial_ids:
                self._ends.pop(t, None)
                self._on_host.discard(t)

    def wait_quiet(self, now: float, stopping: Flag) -> None:
        """Until no end is due within a removal's length (see quiet_from), or the run stops."""
        with self._lock:
            ends = list(self._ends.values())
        stopping.wait(quiet_from(now, ends) - now)
