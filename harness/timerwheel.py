"""The kernel's timer wheel, read from when TIME_WAITs ended. Pure.

Linux rounds a 60 s TIME_WAIT timer up to the next instant of a fixed grid on
CLOCK_MONOTONIC (its wheel level's granularity): 512 jiffies at HZ 100, 250
and 300, 4096 at HZ 1000. So every TIME_WAIT on a host ends on that grid, and
two TIME_WAITs that began at different moments differ by up to one grid step:
the resolution of a TIME_WAIT measurement, unless every close is made at one
phase of the grid (`harness run --close-phase`).

Where that grid lies can also be read, on the host, from /proc/timer_list (ticks()): the agents
then poll just before and just after the one tick a TIME_WAIT can end on.
"""

from __future__ import annotations

import math
import re
from typing import Any


def grid_jiffies(jiffy_s: float) -> int:
    """The grid of a 60 s timer in jiffies: level n of the wheel holds timeouts from 63 x 8^(n-1)
    jiffies on, 8^n jiffies apart (kernel/time/timer.c, LVL_START and LVL_GRAN); as phase.h."""
    gran = 1
    for _ in range(8):
        if 60 / jiffy_s < 63 * gran:
            break
        gran *= 8
    return gran


# The grid for a 60 s timer at HZ = 100, 1000, 250 and 300, coarsest first: 5.12, 4.096, 2.048, 1.71 s.
GRIDS_S = tuple(grid_jiffies(1 / hz) / hz for hz in (100, 1000, 250, 300))
FIT_S = 0.1  # every end this close to one phase: poll windows are about 10 ms


def grid(ends: list[float]) -> tuple[float, float] | None:
    """(grid, phase of its instants) that every TIME_WAIT end instant (CLOCK_MONOTONIC) lies on,
    the coarsest that fits; None when none does.

    Every end falls on the grid, late by at most a poll window; the earliest end of the
    cluster is the closest to the grid instant."""
    if not ends:
        return None
    for g in GRIDS_S:
        phases = sorted(t % g for t in ends)
        gaps = [(b - a, b) for a, b in zip(phases, phases[1:])] + [(phases[0] + g - phases[-1], phases[0])]
        gap, start = max(gaps)
        if g - gap <= FIT_S:
            return g, start
    return None


def resolution(ends: list[float]) -> float:
    """How far apart two TIME_WAITs of this kernel can end for the wheel alone: the grid the ends
    show once there are enough of them to tell; until then, the coarsest grid Linux uses."""
    found = grid(ends) if len(ends) >= 3 else None
    return found[0] if found else GRIDS_S[0]


def ticks(timer_lists: list[str], jiffy_ns: int) -> tuple[int, int] | None:
    """(period, phase) in ns of CLOCK_MONOTONIC of the instants a 60 s timer can fire at, from
    readings of /proc/timer_list; None when they do not say. The wheel fires a level's bucket when
    jiffies reach a multiple of its grid, and jiffies turn on multiples of a jiffy of
    CLOCK_MONOTONIC (tick_init_jiffy_update aligns them). Each reading's "now" comes a little
    before its jiffies line, so a jiffy may turn between them and put the phase one jiffy early:
    the latest of a few readings holds. Integers: a phase that rounds up to the period would be
    none, and a period cut short would drift by a microsecond a grid."""
    grid = grid_jiffies(jiffy_ns / 1e9)
    period = grid * jiffy_ns
    phases = []
    for text in timer_lists:
        now = re.search(r"^now at (\d+) nsecs", text, re.M)
        jiffies = re.search(r"^jiffies: (\d+)", text, re.M)
        if now and jiffies:
            start = int(now.group(1)) // jiffy_ns * jiffy_ns  # the jiffy's start
            phases.append((start + -int(jiffies.group(1)) % grid * jiffy_ns) % period)
    if not phases:
        return None
    first = phases[0]
    return period, max(phases, key=lambda p: (p - first + period // 2) % period)


def next_tick(t: float, ticks: dict[str, Any]) -> float:
    """The first tick at or after t (CLOCK_MONOTONIC seconds) of the grid ticks() found, as
    facts.wheel_ticks keeps it ({"period_ns", "phase_ns"}): when a timer expiring at t fires."""
    period, phase = ticks["period_ns"] / 1e9, ticks["phase_ns"] / 1e9
    return phase + math.ceil((t - phase) / period) * period
