from harness.probes import capture
from harness.spec import Params

from .lost_ack_trial import CLIENT, PORT, SERVER, A, F, P, pcap, seg

# Wall clock 1000.0 is monotonic 10.0; the server closed at monotonic 10.0.
EVENTS = [{"ev": "clock", "mono": 5.0, "realtime": 995.0}, {"ev": "close", "side": "server", "mono": 10.0}]
CLOSE = pcap([
    (999.9, seg(CLIENT, A | P, 1, data=b"hello")),  # data: not part of the close
    (1000.001, seg(SERVER, F | A, 100)),
    (1000.002, seg(CLIENT, A, 2)),  # the client's ACK of the server's FIN
    (1000.003, seg(CLIENT, F | A, 2)),
    (1000.004, seg(SERVER, A, 101)),  # final ACK, dropped
    (1000.204, seg(CLIENT, F | A, 2)),
    (1000.205, seg(SERVER, A, 101)),  # again, delivered
])


def test_timeline_names_each_segment_on_the_close_axis():
    tl = capture.timeline(CLOSE, EVENTS, PORT, Params(), dropped_copies=[0])
    assert [e.what for e in tl] == [
        "server FIN", "client ACK of the server FIN", "client FIN",
        "final ACK", "client FIN retransmission", "final ACK (again)"]
    assert tl[0].t == 0.001
    assert [e.dropped for e in tl if "final" in e.what] == [True, False]


def test_figures_count_fin_retransmissions_and_final_acks():
    f = capture.figures(CLOSE, EVENTS, PORT, Params(), dropped_copies=[0])
    assert f.fin_retransmits == 1
    assert f.final_acks_seen == 2


def test_unknown_drop_pattern_leaves_copies_unlabelled():
    tl = capture.timeline(CLOSE, EVENTS, PORT, Params(), dropped_copies=None)
    assert all(e.dropped is None and "dropped" not in e.to_json() for e in tl)
