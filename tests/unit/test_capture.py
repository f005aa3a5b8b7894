import dpkt

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


def test_a_syn_from_the_old_port_what_it_met_and_the_isn_the_time_wait_handed_on():
    # The server's FIN is sequence 500 (next: 501). The client's SYNs from the same port meet the
    # TIME_WAIT's ACK of the old connection twice (the client answers each with a RST), then a
    # SYN-ACK whose ISN is the old next sequence number + 65537.
    SYN, RST = capture.SYN, capture.RST
    packets = pcap([
        (999.0, seg(CLIENT, SYN, 1)),
        (999.0, seg(SERVER, SYN | A, 400, 2)),
        (1000.001, seg(SERVER, F | A, 500, 2)),
        (1000.003, seg(CLIENT, F | A, 2, 501)),
        (1000.004, seg(SERVER, A, 501, 3)),
        (1000.020, seg(CLIENT, SYN, 9000)),
        (1000.020, seg(SERVER, A, 501, 3)),
        (1000.020, seg(CLIENT, RST, 3)),
        (1000.035, seg(CLIENT, SYN, 9000)),
        (1000.035, seg(SERVER, A, 501, 3)),
        (1000.035, seg(CLIENT, RST, 3)),
        (1001.040, seg(CLIENT, SYN, 9000)),
        (1001.040, seg(SERVER, SYN | A, 501 + 65537, 9001)),
    ])
    f = capture.figures(packets, EVENTS, PORT, Params(), dropped_copies=None)
    assert (f.same_port_syn_s, f.same_port_syns, f.same_port_tw_acks) == (0.02, 3, 2)
    assert (f.same_port_accepted_s, f.same_port_isn_offset) == (1.04, 65537)
    assert [s.what for s in f.timeline][2:] == [
        "final ACK", "SYN from the old port", "server ACK of the old connection", "client RST from the old port",
        "SYN from the old port", "server ACK of the old connection", "client RST from the old port",
        "SYN from the old port", "server SYN-ACK: a new connection"]
    assert f.timeline[-1].rel_seq == 101 + 65537  # from the server's first ISN, as Wireshark counts
    assert f.server_rsts == f.client_rsts == 0  # those of the first connection only
    none = capture.figures(CLOSE, EVENTS, PORT, Params(), dropped_copies=None)
    assert none.same_port_syn_s is None and none.same_port_isn_offset is None


def test_a_cut_packet_keeps_its_length_from_the_ip_header():
    # The capture keeps each packet's first bytes (roles.CAPTURE_SNAPLEN); cut here to the headers,
    # a segment that carried data must not pass for a pure ACK.
    headers = 14 + 20 + 20
    cut = pcap([(ts, frame[:headers]) for ts, frame in [
        (1000.001, seg(SERVER, F | A, 100)),
        (1000.003, seg(CLIENT, F | A, 2)),
        (1000.004, seg(SERVER, A, 101, data=b"x" * 300)),  # data after the FINs: not a final ACK
        (1000.005, seg(SERVER, A, 101)),  # the final ACK
    ]])
    assert [tcp.payload_len for _, tcp in capture._segments(cut)] == [0, 0, 300, 0]
    tl = capture.timeline(cut, EVENTS, PORT, Params(), dropped_copies=None)
    assert [e.what for e in tl] == ["server FIN", "client FIN", "final ACK"]
    assert tl[-1].t == 0.005


def test_payload_length_of_a_cut_ipv6_segment():
    tcp = dpkt.tcp.TCP(sport=1, dport=2, data=b"y" * 40)
    ip6 = dpkt.ip6.IP6(src=b"\0" * 15 + b"\1", dst=b"\0" * 15 + b"\2", nxt=6, hlim=64, data=tcp)
    ip6.plen = len(tcp)
    frame = bytes(dpkt.ethernet.Ethernet(data=ip6, type=dpkt.ethernet.ETH_TYPE_IP6))[:14 + 40 + 20]
    (_, got), = capture._segments(pcap([(1.0, frame)]))
    assert got.payload_len == 40 and got.data == b""
