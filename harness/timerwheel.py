"""The kernel's timer wheel, read from when TIME_WAITs ended. Pure.

Linux rounds a 60 s TIME_WAIT timer up to the next instant of a fixed grid on
CLOCK_MONOTONIC (its wheel level's granularity): 512 jiffies at HZ 100, 250
and 300, 4096 at HZ 1000. So every TIME_WAIT on a host ends on that grid, and
two TIME_WAITs that began at different moments differ by up to one grid step:
the resolution of a TIME_WAIT measurement, unless every close is made at one
phase of the grid (`harness run --close-phase`).
"""

from __future__ import annotations

# The grid for a 60 s timer at HZ = 100, 1000, 250 and 300, coarsest first.
GRIDS_S = (5.12, 4.096, 2.048, 512 / 300)
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
