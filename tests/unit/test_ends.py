"""When a lab may go: after the TIME_WAITs of other trials due within a removal's length have
ended, on the ticks of the wheel's grid their timers end on."""

from pytest import approx

from harness.lab.ends import Ends, quiet_from
from harness.stopping import Flag
from harness.timerwheel import next_tick

TICKS = {"period_ns": 2_048_000_000, "phase_ns": 1_240_000_000, "boot_id": "b"}


def test_a_timer_ends_on_the_first_tick_of_the_grid_after_its_expiry():
    assert next_tick(1.24, TICKS) == 1.24
    assert next_tick(1.25, TICKS) == approx(1.24 + 2.048)
    assert next_tick(100.0, TICKS) == approx(1.24 + 49 * 2.048)  # 99.544 < 100 <= 101.592


def test_a_quiet_moment_comes_after_every_end_due_within_a_removal():
    assert quiet_from(10.0, []) == 10.0
    assert quiet_from(10.0, [5.0, 13.0]) == 10.0  # one long past, one after a removal's 2.5 s
    assert quiet_from(10.0, [11.0, 12.9, 16.0]) == approx(12.95)  # 16.0 comes 3.05 s after
    assert quiet_from(10.0, [11.0, 13.0, 15.0]) == approx(15.05)  # each end brings the next within reach
    assert quiet_from(10.0, [9.98]) == approx(10.03)  # its polls and a late softirq are still to come
    # labs ending every 2 s for a long while: just after the last of their ends within 10 s
    assert quiet_from(10.0, [11.0 + 2 * i for i in range(20)]) == approx(19.05)


def test_the_ends_are_those_of_agents_on_this_host_until_they_are_over():
    ends = Ends(TICKS)
    on, other = "t000", "t001"
    ends.seen(on, {"src": "agent", "ev": "clock", "mono": 1.0, "wheel_ticks": True})
    ends.seen(other, {"src": "agent", "ev": "clock", "mono": 1.0, "wheel_ticks": False})  # another kernel's clock
    for t in (on, other):
        ends.seen(t, {"src": "agent", "ev": "tw_appear", "mono": 40.0, "expires_ms": 60000})
    assert ends._ends == {on: next_tick(100.0, TICKS)}
    ends.seen(on, {"src": "agent", "ev": "tw_timer_restart", "mono": 41.0, "expires_ms": 60000})
    assert ends._ends == {on: next_tick(101.0, TICKS)}
    ends.seen(on, {"src": "client", "ev": "done", "mono": 50.0})  # another program's end
    assert on in ends._ends
    ends.seen(on, {"src": "agent", "ev": "tw_gone", "mono": 101.6})
    assert ends._ends == {}
    ends.seen(on, {"src": "agent", "ev": "tw_appear", "mono": 200.0, "expires_ms": 60000})
    ends.forget([on])  # its lab went (a failed trial's agent says no more)
    assert ends._ends == {}


def test_a_wait_for_quiet_ends_at_once_when_the_run_stops():
    ends = Ends(TICKS)
    ends.seen("t000", {"src": "agent", "ev": "clock", "mono": 1.0, "wheel_ticks": True})
    ends.seen("t000", {"src": "agent", "ev": "tw_appear", "mono": 1.0, "expires_ms": 60000})
    stopping = Flag()
    stopping.set()
    ends.wait_quiet(60.0, stopping)  # an end at 61.4: without the stop, about 1.45 s
