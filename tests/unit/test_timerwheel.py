"""The wheel's grid and its ticks read from /proc/timer_list (timerwheel.py)."""

from __future__ import annotations

import pytest

from harness import timerwheel

JIFFY = 0.004  # HZ 250
NOW_NS, JIFFIES = 20465674764284, 4300008653


def reading(now_ns: int, jiffies: int) -> str:
    return (f"Timer List Version: v0.10\nnow at {now_ns} nsecs\n\ncpu: 0\n clock 0:\n"
            f"  .last_jiffies   : {jiffies - 1}\njiffies: {jiffies}\n")


@pytest.mark.parametrize(("hz", "grid"), [(100, 512), (250, 512), (300, 512), (1000, 4096)])
def test_a_60_s_timer_sits_on_the_level_the_kernel_puts_it(hz, grid):
    assert timerwheel.grid_jiffies(1 / hz) == grid
    assert round(grid / hz, 3) in [round(g, 3) for g in timerwheel.GRIDS_S]


def test_the_ticks_fall_where_jiffies_reach_a_multiple_of_the_grid():
    period, phase = timerwheel.ticks([reading(NOW_NS, JIFFIES)], JIFFY)
    assert period == pytest.approx(2.048)
    now = NOW_NS / 1e9
    tick = phase + (now // period + 1) * period  # the next tick after now
    jiffy_start = now // JIFFY * JIFFY
    assert (JIFFIES + round((tick - jiffy_start) / JIFFY)) % 512 == 0


def test_a_reading_whose_jiffy_turned_after_its_now_gives_way_to_the_latest():
    good = timerwheel.ticks([reading(NOW_NS, JIFFIES)], JIFFY)
    late = timerwheel.ticks([reading(NOW_NS, JIFFIES + 1)], JIFFY)
    assert good and late and (good[1] - late[1]) % good[0] == pytest.approx(JIFFY)
    assert timerwheel.ticks([reading(NOW_NS, JIFFIES + 1), reading(NOW_NS, JIFFIES)], JIFFY) == good


def test_nothing_readable_says_nothing():
    assert timerwheel.ticks(["Timer List Version: v0.10\n"], JIFFY) is None
    assert timerwheel.ticks([], JIFFY) is None
