"""The wheel's grid and its ticks read from /proc/timer_list (timerwheel.py)."""

from __future__ import annotations

import pytest

from harness import timerwheel

JIFFY = 4_000_000  # ns: HZ 250
NOW_NS, JIFFIES = 20465674764284, 4300008653


def reading(now_ns: int, jiffies: int) -> str:
    return (f"Timer List Version: v0.10\nnow at {now_ns} nsecs\n\ncpu: 0\n clock 0:\n"
            f"  .last_jiffies   : {jiffies - 1}\njiffies: {jiffies}\n")


@pytest.mark.parametrize(("hz", "grid"), [(100, 512), (250, 512), (300, 512), (1000, 4096)])
def test_a_60_s_timer_sits_on_the_level_the_kernel_puts_it(hz, grid):
    assert timerwheel.grid_jiffies(1 / hz) == grid
    assert round(grid / hz, 3) in [round(g, 3) for g in timerwheel.GRIDS_S]


def test_the_ticks_fall_where_jiffies_reach_a_multiple_of_the_grid():
    found = timerwheel.ticks([reading(NOW_NS, JIFFIES)], JIFFY)
    assert found is not None
    period, phase = found
    assert period == 2_048_000_000 and 0 <= phase < period
    tick = phase + ((NOW_NS - phase) // period + 1) * period  # the next tick after now
    jiffy_start = NOW_NS // JIFFY * JIFFY
    assert (tick - jiffy_start) % JIFFY == 0 and (JIFFIES + (tick - jiffy_start) // JIFFY) % 512 == 0


def test_a_reading_whose_jiffy_turned_after_its_now_gives_way_to_the_latest():
    good = timerwheel.ticks([reading(NOW_NS, JIFFIES)], JIFFY)
    late = timerwheel.ticks([reading(NOW_NS, JIFFIES + 1)], JIFFY)
    assert good and late and (good[1] - late[1]) % good[0] == JIFFY
    assert timerwheel.ticks([reading(NOW_NS, JIFFIES + 1), reading(NOW_NS, JIFFIES)], JIFFY) == good


def test_nothing_readable_says_nothing():
    assert timerwheel.ticks(["Timer List Version: v0.10\n"], JIFFY) is None
    assert timerwheel.ticks([], JIFFY) is None


def test_a_phase_on_the_grid_itself_is_zero_not_a_whole_period():
    # readings whose phase, in floats, came out as 2.047999999994 and printed as the period itself
    found = timerwheel.ticks([reading(34548959054513, 4342008119)], JIFFY)
    assert found is not None and 0 <= found[1] < found[0]
    assert timerwheel.ticks([reading(8_000_000, 512)], JIFFY) == (2_048_000_000, 8_000_000)


def test_the_latest_reading_holds_across_the_grids_wrap():
    # the right reading's phase is 0; one whose jiffy turned after its now says a jiffy before the
    # wrap, the larger number: the later phase is kept, not the larger
    right, turned = reading(2_044_000_000, 511 + 512), reading(2_044_000_000, 512 + 512)
    assert timerwheel.ticks([right], JIFFY) == (2_048_000_000, 0)
    assert timerwheel.ticks([turned], JIFFY) == (2_048_000_000, 2_044_000_000)
    assert timerwheel.ticks([turned, right], JIFFY) == timerwheel.ticks([right, turned], JIFFY) == (2_048_000_000, 0)

