"""A program's output as events, fed in chunks; waits that end with an event, its end, or a stop."""

import threading
import time

import pytest

from harness.lab.streams import EventStream, Stopped
from harness.stopping import Flag


def test_lines_cut_anywhere_become_events_and_other_lines_text():
    got = []
    stream = EventStream("agent", got.append, Flag())
    for chunk in (b'{"ev":"rea', b'dy"}\nnot json\n{"e', b'v":"done"}'):
        stream.feed(chunk)
    stream.end()  # the last line had no newline
    assert got == [{"ev": "ready"}, {"src": "agent", "ev": "output", "text": "not json"}, {"ev": "done"}]
    assert stream.wait_for(lambda e: e.get("ev") == "done", 0) == {"ev": "done"}


def test_a_wait_ends_with_the_event_or_with_the_stream():
    stream = EventStream("agent", lambda e: None, Flag())
    threading.Timer(0.05, stream.feed, [b'{"ev":"close"}\n']).start()
    assert stream.wait_for(lambda e: e.get("ev") == "close", 5) == {"ev": "close"}
    threading.Timer(0.05, stream.end).start()
    assert stream.wait_for(lambda e: e.get("ev") == "done", 5) is None
    assert stream.ended


def test_a_wait_is_woken_only_by_the_event_it_waits_for():
    class Counting(threading.Condition):
        wakes = 0

        def wait(self, timeout=None):
            self.wakes += 1
            return super().wait(timeout)

    stopping = Flag()
    stream = EventStream("agent", lambda e: None, stopping)
    stream._cond = cond = Counting()
    stopping.watch(cond)

    def feed():
        while not stream._wanted:
            time.sleep(0.001)
        for _ in range(200):  # a trial's timer samples: none of them what its thread waits for
            stream.feed(b'{"ev":"tw_timer"}\n')
        stream.feed(b'{"ev":"done"}\n')
    threading.Thread(target=feed).start()
    assert stream.wait_for(lambda e: e.get("ev") == "done", 10) == {"ev": "done"}
    assert cond.wakes == 1 and not stream._wanted


def test_a_stop_wakes_a_long_wait_at_once():
    stopping = Flag()
    stream = EventStream("agent", lambda e: None, stopping)
    threading.Timer(0.05, stopping.set).start()
    start = time.monotonic()
    with pytest.raises(Stopped):
        stream.wait_for(lambda e: False, 60)
    assert time.monotonic() - start < 5


def test_a_failing_sink_is_raised_to_the_waiter():
    def sink(event):
        raise RuntimeError("bug")
    stream = EventStream("agent", sink, Flag())
    stream.feed(b'{"ev":"ready"}\n{"ev":"more"}\n')
    with pytest.raises(RuntimeError, match="bug"):
        stream.wait_for(lambda e: False, 5)
