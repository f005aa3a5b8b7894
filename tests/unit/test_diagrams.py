"""The data each figure is drawn from, checked on a trial made by hand (lost_ack_trial.py)."""

import dataclasses

import pytest

from harness import analyze
from harness.record import TrialResult
from harness.report import diagrams, plots

from .lost_ack_trial import EVENTS, EXPERIMENT, PCAP, TRIAL

RESULT = analyze.trial(EXPERIMENT, TRIAL, EVENTS, PCAP)


def test_sequence_arrows_are_the_close_segment_by_segment():
    seq = diagrams.sequence(RESULT, EVENTS)
    assert [(a.sender, a.kind, a.dropped) for a in seq.arrows] == [
        ("server", "fin", False), ("client", "fin", False), ("server", "final ack", True),
        ("client", "fin again", False), ("server", "final ack again", True),
        ("client", "fin again", False), ("server", "final ack again", True)]
    assert [a.t for a in seq.arrows] == [0.001, 0.002, 0.003, 0.205, 0.206, 0.62, 0.621]
    # relative numbers, as in the book: the server's FIN after 5 bytes of data
    assert seq.arrows[0].label == "FIN, ACK  seq=6 ack=6"
    assert seq.arrows[2].label == "ACK  seq=7 ack=7"


def test_pauses_longer_than_a_burst_break_the_axis_with_their_length():
    seq = diagrams.sequence(RESULT, EVENTS)
    assert [round(b.seconds, 3) for b in seq.breaks] == [0.202, 0.414, 60.019]
    rows = [a.row for a in seq.arrows]
    assert rows == sorted(rows) and rows[:3] == [0.0, 1.0, 2.0]
    assert rows[3] == 4.0  # one spare row for the break mark
    assert seq.end_row == rows[-1] + 2.0


def test_time_wait_bar_and_its_restarts_where_the_fins_arrived():
    seq = diagrams.sequence(RESULT, EVENTS)
    _r0, r1, t0, t1 = seq.time_wait
    assert (t0, t1) == (0.01, 60.64) and r1 == seq.end_row
    fins_again = [a for a in seq.arrows if a.kind == "fin again"]
    assert [row for row, _ in seq.restarts] == [a.row + diagrams.SLANT for a in fins_again]
    assert [round(t, 3) for _, t in seq.restarts] == [0.21, 0.63]


def test_socket_timeline_states_timer_and_attempts():
    tl = diagrams.socket_timeline(RESULT, EVENTS)
    assert [(s.label, s.start, s.end) for s in tl.states] == [
        ("ESTABLISHED", 0.0, 0.01), ("TIME_WAIT", 0.01, 60.64), ("gone", 60.64, 60.71)]
    assert tl.timer == [(0.01, 59.99), (0.21, 60.0), (0.63, 60.0), (1.01, 59.62)]
    assert tl.timer_restarts == [(0.21, 60.0), (0.63, 60.0)]
    # the timer runs down between readings: the sawtooth
    assert tl.countdown[:4] == [(0.01, 59.99), (0.21, pytest.approx(59.79)), (0.21, 60.0), (0.63, pytest.approx(59.58))]
    assert tl.countdown[-1] == (60.64, 0.0)
    assert tl.bind_plain == diagrams.Attempts(diagrams.Span(0.0001, 60.641, "failing"), 60.641, 6063)
    assert tl.restart.ok_at == 60.7 and tl.restart.failures == 2
    assert tl.fins == [0.002, 0.205, 0.62] and tl.drops == [0.003, 0.206, 0.621]


def test_cases_side_by_side_and_the_representative_trial():
    rs = [dataclasses.replace(RESULT, trial=f"t{i:03d}", index=i, time_wait_s=60 + i, observed_s=60 + i)
          for i in range(5)] + [TrialResult("t005", 5, "other", 0, {"close_first": "client"}, status="ok")]
    (a, b) = diagrams.case_points(rs)
    assert a.case == "all lost" and a.values["time_wait_s"] == [60, 61, 62, 63, 64]
    assert b.never["time_wait_s"] == 1 and b.values["time_wait_s"] == []
    assert diagrams.representative(rs[:5]).trial == "t002"
    assert diagrams.representative(rs[:4]).trial == "t001"  # the lower median


def test_every_figure_is_an_svg():
    for svg in (plots.sequence_svg(diagrams.sequence(RESULT, EVENTS), "t", "a"),
                plots.timeline_svg(diagrams.socket_timeline(RESULT, EVENTS), "t", "b"),
                plots.cases_svg(diagrams.case_points([RESULT]), "c")):
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and svg.rstrip().endswith("</svg>")
