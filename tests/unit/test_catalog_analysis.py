"""The catalog's figures from raw data: the fault's RST, the capture's first connection, the
client's side, the sysctls read back, and which table columns show them."""

import json

import dpkt
import pytest

from harness import analyze, plan, spec
from harness.errors import SpecError
from harness.faults import choose, nftables
from harness.lab import roles
from harness.probes import capture
from harness.record import FAILED, OK, ClientSide, TrialResult
from harness.report import headline, tables

from .lost_ack_trial import C_ISN, CLIENT, EVENTS, EXP, EXPERIMENT, NETEM, PCAP, RST, S_ISN, SERVER, SYN, TRIAL, A, F, at, pcap, seg


def test_nft_answers_the_first_copy_after_the_lost_ones_with_a_rst():
    rules = nftables.ruleset(spec.Params(final_ack_loss=spec.Loss("first", k=1), final_ack_reset=True), EXP.port)
    assert 'numgen inc mod 64 vmap { 0 : jump drop_copy, 1 : jump reset_copy }' in rules
    assert 'chain reset_copy {\n\t\tcounter name "answered" reject with tcp reset' in rules
    counters = {"nftables": [{"counter": {"table": "harness_fault", "name": n, "packets": v}}
                             for n, v in (("final_acks", 3), ("dropped", 1), ("answered", 1))]}
    counts = nftables.Nftables().counts(json.dumps(counters), spec.Params(final_ack_loss=spec.Loss("first", k=1),
                                                                        final_ack_reset=True), EXP.port)
    assert counts["final_acks_reset"] == 1 and counts["final_acks_dropped"] == 1


def test_only_nftables_crafts_the_rst():
    backend, why = choose.choose("auto", [], NETEM, "t.yaml", resets=True)
    assert backend.name == "nftables" and "RST" in why
    with pytest.raises(SpecError, match="netem cannot answer a final ACK with a RST"):
        choose.choose("netem", [], NETEM, "t.yaml", resets=True)


def _probe(sport, flags, seq, t):
    """A segment of another connection from the client (a reconnect probe)."""
    eth = dpkt.ethernet.Ethernet(seg(CLIENT, flags, seq))
    eth.data.data.sport = sport
    return at(t), bytes(eth)


# Server closes first; the first final ACK is dropped, the next answered with a RST, and the
# client's next FIN meets the server's RST. Then a reconnect from another port, which does not
# belong to the timeline, and a new SYN from the first connection's port, which ends the first
# connection's part and is named apart.
RESET_PCAP = pcap([
    (at(-1.0), seg(CLIENT, SYN, C_ISN)),
    (at(-1.0), seg(SERVER, SYN | A, S_ISN, C_ISN + 1)),
    (at(0.001), seg(SERVER, F | A, S_ISN + 1, C_ISN + 1)),
    (at(0.002), seg(CLIENT, F | A, C_ISN + 1, S_ISN + 2)),
    (at(0.003), seg(SERVER, A, S_ISN + 2, C_ISN + 2)),  # dropped
    (at(0.205), seg(CLIENT, F | A, C_ISN + 1, S_ISN + 2)),
    (at(0.206), seg(SERVER, A, S_ISN + 2, C_ISN + 2)),  # answered with the RST
    (at(0.206), seg(CLIENT, RST, C_ISN + 2)),
    (at(0.413), seg(CLIENT, F | A, C_ISN + 1, S_ISN + 2)),
    (at(0.414), seg(SERVER, RST, S_ISN + 2)),
    _probe(40002, SYN, 77, 0.5),
    (at(61.0), seg(CLIENT, SYN, C_ISN + 99999)),
    (at(61.0), seg(CLIENT, RST, C_ISN + 100000)),
])
CLOCK = [{"src": "agent", "ev": "clock", "mono": 95.0, "realtime": 1095.0},
         {"src": "agent", "ev": "close", "side": "server", "mono": 100.0}]
RESET = spec.Params(final_ack_loss=spec.Loss("first", k=1), final_ack_reset=True)


def test_the_timeline_is_the_first_connection_and_marks_the_answered_copy():
    tl = capture.timeline(RESET_PCAP, CLOCK, 7777, RESET, dropped_copies=[0])
    assert [e.what for e in tl] == ["server FIN", "client FIN", "final ACK", "client FIN retransmission",
                                       "final ACK (again)", "client RST", "client FIN retransmission",
                                       "server RST", "SYN from the old port", "client RST from the old port"]
    assert [(e.dropped, e.reset) for e in tl if "final" in e.what] == [(True, False),
                                                                                        (False, True)]


def test_capture_figures_count_rsts_and_the_last_fin():
    f = capture.figures(RESET_PCAP, CLOCK, 7777, RESET, dropped_copies=[0])
    assert (f.server_rsts, f.client_rsts, f.fin_retransmits) == (1, 1, 2)
    assert f.last_fin_s == pytest.approx(0.413)


EXP_WATCHED = spec.parse("name: t\ndescription: d\ncases:\n  - {name: c, close_first: client, client_port: 40000, "
                         "client_sysctls: {net.ipv4.tcp_rfc1337: 1}}\n", "t.yaml")
(WATCHED,) = plan.trials(EXP_WATCHED)


def w(ev, t, **kw):
    return {"src": "client-agent", "ev": ev, "mono": 100.0 + t, **kw}


WATCHER_EVENTS = [
    {"src": "client", "ev": "sysctls", "mono": 90.0, "values": {"net.ipv4.tcp_rfc1337": "1"}},
    {"src": "agent", "ev": "sysctls", "mono": 90.0, "values": {"net.ipv4.tcp_rfc1337": "0"}},
    {"src": "client", "ev": "close", "side": "client", "mono": 100.0},
    w("watching", -1.0, lports=[40000]),
    w("tw_appear", 0.01, lport=40000, window_ms=10.0),
    w("reconnect", 0.011, ok=True, lport=40002, step="", errno=""),
    w("fixed_port_fail", 0.012, step="bind", errno="Address already in use"),
    w("tw_gone", 60.51, window_ms=10.0),
    w("fixed_port_ok", 60.512, lport=40000, connected=True, failures=6049, window_ms=10.0),
    w("done", 60.52),
    {"src": "server", "ev": "exit", "status": 0},
    {"src": "agent", "ev": "tcpext", "mono": 99.0, "at": "close", "counters": {"TW": 3}},
    {"src": "agent", "ev": "tcpext", "mono": 161.0, "at": "end", "counters": {"TW": 3}},
]


def test_client_figures_from_the_client_agent():
    f = analyze.client_side(WATCHER_EVENTS, "client")
    assert (f.client_tw_appear_s, f.client_tw_gone_s, f.client_tw_port) == (0.01, 60.51, 40000)
    assert f.client_tw_s == pytest.approx(60.5)
    assert (f.reconnect_s, f.reconnect_port, f.reconnect_same_port) == (0.011, 40002, 0)
    assert (f.fixed_port_s, f.fixed_port_failures) == (60.512, 6049)
    assert f.fixed_port_error == "bind: Address already in use" and f.reconnect_error is None
    assert analyze.client_side([e for e in WATCHER_EVENTS if e["src"] != "client-agent"], "client") == ClientSide()


def test_agent_figures_ignore_the_client_agents_events():
    f = analyze.server_side(WATCHER_EVENTS, "client", poll_ms=10)
    assert f.time_wait_s is None and f.tw_peak == 0
    assert (f.server_exit_status, f.tw_overflow, f.tw_entered) == (0, 0, 0)


def test_the_sysctls_are_those_read_back_and_a_difference_is_reported():
    read, problems = analyze.sysctls_read(WATCHER_EVENTS, WATCHED)
    assert (read.server_sysctls, read.client_sysctls) == ({"net.ipv4.tcp_rfc1337": "0"}, {"net.ipv4.tcp_rfc1337": "1"})
    assert problems == []
    wrong = [{**e, "values": {"net.ipv4.tcp_rfc1337": "0"}} if e.get("ev") == "sysctls" else e
             for e in WATCHER_EVENTS]
    _, problems = analyze.sysctls_read(wrong, WATCHED)
    assert problems == ["client net.ipv4.tcp_rfc1337 is '0' in the namespace; the case asks for 1"]


def test_a_trial_whose_sysctl_did_not_hold_failed():
    end = {"src": "harness", "ev": "trial_end", "error": None, "phases": {}, "wall_s": 62.0}
    agent_done = {"src": "agent", "ev": "done", "mono": 161.0}
    ok = analyze.trial(EXP_WATCHED, WATCHED, WATCHER_EVENTS + [agent_done, end], None)
    assert (ok.status, ok.why) == (OK, "")
    assert ok.client_sysctls == {"net.ipv4.tcp_rfc1337": "1"}
    wrong = [{**e, "values": {}} if e.get("ev") == "sysctls" else e for e in WATCHER_EVENTS]
    bad = analyze.trial(EXP_WATCHED, WATCHED, wrong + [agent_done, end], None)
    assert bad.status == FAILED and "net.ipv4.tcp_rfc1337 is None" in bad.why


def test_a_watched_trial_needs_the_client_agent_to_finish():
    end = {"src": "harness", "ev": "trial_end", "error": None, "phases": {}, "wall_s": 62.0}
    events = [e for e in WATCHER_EVENTS if e.get("ev") != "done"] + [
        {"src": "agent", "ev": "done", "mono": 161.0}, w("timeout", 600.0, after_s=600), end]
    r = analyze.trial(EXP_WATCHED, WATCHED, events, None)
    assert (r.status, r.why) == (FAILED, "client-agent: not over after 600 s (max_wait_s)")


def _row(i, params, **figures):
    return TrialResult(trial=f"t{i:03d}", index=i, case=f"c{i}", repeat=0, status=OK,
                       params={**spec.Params().to_json(), **params}, **figures)


def test_catalog_columns_show_where_a_case_asks_for_them():
    plain = [_row(0, {}, time_wait_s=60.0, tw_peak=1, tw_overflow=0, server_exit_status=130, server_rsts=0)]
    headers, _ = tables.case_rows(plain)
    assert not {"TIME_WAIT sockets (peak seen)", "server exit status", "server RSTs", "client TIME_WAIT (s)"} & set(headers)
    catalog = plain + [_row(1, {"server_stop": "linger0", "watch_client": True}, server_exit_status=0, server_rsts=1),
                       _row(2, {"connections": 8}, tw_peak=4, tw_overflow=4)]
    headers, rows = tables.case_rows(catalog)
    assert {"TIME_WAIT sockets (peak seen)", "server exit status", "server RSTs", "client TIME_WAIT (s)"} <= set(headers)
    assert rows[1][headers.index("client TIME_WAIT (s)")] == "-"
    assert rows[2][headers.index("TIME_WAIT overflows")] == "4"


def test_the_headline_tells_the_clients_own_time_wait():
    watched = {"close_first": "client", "watch_client": True}
    rs = [_row(0, watched, client_tw_s=61.3, reconnect_s=0.003, reconnect_same_port=0),
          _row(1, {**watched, "client_port": 40000}, client_tw_s=60.8, reconnect_s=0.002, reconnect_same_port=0,
               fixed_port_s=60.8, restart_s=60.8)]
    assert headline.sentences(rs) == [
        "When the client closed first, its own socket stayed in TIME_WAIT for 61.0 s; a fresh socket connected "
        "again after 0.003 s, from another port, one bound to the client's fixed port only after 60.8 s."]


def test_packets_the_capture_lost_are_counted_from_tcpdumps_last_words():
    said = lambda text: {"src": "capture", "ev": "output", "text": text}
    assert capture.kernel_drops([said("1600 packets received by filter"), said("250 packets dropped by kernel"),
                                 {"src": "server", "ev": "output", "text": "3 packets dropped by kernel"}]) == 250
    assert capture.kernel_drops([said("0 packets dropped by kernel")]) == 0
    assert capture.kernel_drops([said("tcpdump: listening on eth0")]) is None  # it never said


def test_a_trial_whose_capture_lost_packets_or_never_said_fails_saying_so():
    def judged(text):
        events = [e for e in EVENTS if e.get("src") != "capture"] + ([{"src": "capture", "ev": "output",
                                                                         "text": text}] if text else [])
        return analyze.trial(EXPERIMENT, TRIAL, events, PCAP)
    assert judged("0 packets dropped by kernel").ok
    lost = judged("3 packets dropped by kernel")
    assert not lost.ok and "the capture lost 3 packet(s)" in lost.why
    assert "never said" in judged(None).why


def test_the_capture_ring_grows_with_the_lab():
    assert roles.capture_buffer_kib(1) == 2048 and roles.capture_buffer_kib(1000) == 8192
    command = roles.capture(list(range(8000, 8040)))
    assert command[command.index("-B") + 1] == "2560" and command[-1] == "tcp portrange 8000-8039"
    assert command[command.index("-s") + 1] == str(roles.CAPTURE_SNAPLEN)
