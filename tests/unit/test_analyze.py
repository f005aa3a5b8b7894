import pytest

from harness import analyze
from harness.record import FAILED, INTERRUPTED, OK, TrialResult

from .lost_ack_trial import EVENTS, EXPERIMENT, PCAP, TRIAL


def analysed(events=EVENTS, pcap=PCAP):
    return analyze.trial(EXPERIMENT, TRIAL, events, pcap)


def test_every_figure_of_a_trial_from_its_events_and_pcap():
    r = analysed()
    assert (r.status, r.why) == (OK, "")
    assert r.time_wait_s == pytest.approx(60.63)
    assert r.rebind_plain_s == 60.641 and r.rebind_reuseaddr_s == 60.642 and r.restart_s == 60.7
    assert r.bind_errors == 2 and r.tw_timer_restarts == 2
    assert (r.backend, r.final_acks_matched, r.final_acks_dropped, r.dropped_copies) == ("nftables", 3, 3, [0, 1, 2])
    assert r.fin_retransmits == 2 and r.final_acks_seen == 3
    assert r.wall_s == 62.0 and r.capture == "captures/t000.pcap" and r.window_max_ms == 10.0


def test_json_form_round_trips():
    r = analysed()
    assert TrialResult.from_json(r.to_json()) == r
    assert "logs" not in r.to_json()


def test_the_harness_error_is_why_a_trial_failed():
    end = {**EVENTS[-1], "error": "echo exchange: client exited"}
    r = analysed(EVENTS[:-1] + [end])
    assert (r.status, r.why) == (FAILED, "echo exchange: client exited")
    assert "agent: " in r.logs and "harness" not in r.logs.split(":")[0]


def test_an_interrupted_trial_and_one_never_started():
    r = analysed(EVENTS[:-1] + [{**EVENTS[-1], "error": "interrupted"}])
    assert r.status == INTERRUPTED
    never = analysed([], None)
    assert never.status == INTERRUPTED and never.why.startswith("not started")


def test_a_trial_without_its_end_record_failed():
    r = analysed(EVENTS[:-1])
    assert r.status == FAILED and "no end record" in r.why


def test_unreadable_fault_counters_fail_the_trial():
    events = [e for e in EVENTS if e.get("ev") != "output"] + [{"src": "fault", "ev": "output", "text": "?"}]
    r = analysed(events)
    assert r.status == FAILED and r.why.startswith("fault readout:")


def test_agent_timeout():
    events = [e for e in EVENTS if e.get("ev") != "done"] + [{"src": "agent", "ev": "timeout", "after_s": 600}]
    r = analysed(events)
    assert (r.status, r.why) == (FAILED, "not over after 600 s (max_wait_s)")


def test_no_time_wait_when_the_client_closes_first():
    events = [{"src": "client", "ev": "close", "mono": 5.0, "side": "client"},
              {"src": "agent", "ev": "bind_ok", "mono": 5.001, "reuseaddr": False}]
    f = analyze.server_side(events, "client", poll_ms=10)
    assert f.time_wait_s is None and f.rebind_plain_s == 0.001


def test_summary():
    s = analyze.summarize([3, None, 1, 2])
    assert (s.n, s.median, s.min, s.max, s.stdev) == (3, 2.0, 1.0, 3.0, 1.0)
    assert analyze.summarize([None]) is None


def test_a_time_wait_no_poll_saw_is_bounded_by_the_widest_gap_between_polls():
    # The kernel counted one TIME_WAIT (TcpExt TW) that no poll saw: a SYN or RST ended it between two.
    events = [{"src": "agent", "ev": "close", "mono": 5.0, "side": "server", "how": "SIGINT"},
              {"src": "agent", "ev": "tcpext", "mono": 5.0, "at": "close", "counters": {}},
              {"src": "agent", "ev": "poll_stats", "mono": 6.0, "interval_ms": 10, "polls": 100,
               "late_max_ms": 1.5, "late_over_5ms": 0, "window_max_ms": 11.25},
              {"src": "agent", "ev": "tcpext", "mono": 6.0, "at": "end", "counters": {"TW": 1}}]
    f = analyze.server_side(events, "server", poll_ms=10, peer_fin=True)
    assert f.time_wait_s is None and f.time_wait_max_s == 0.01125 and f.tw_entered == 1
    none = analyze.server_side(events[:3], "server", poll_ms=10, peer_fin=True)  # no count: nothing to bound
    assert none.time_wait_s is None and none.time_wait_max_s is None
    # without the peer's FIN no TIME_WAIT began: the count is an orphan's FIN_WAIT2 that timed out
    orphan = analyze.server_side(events, "server", poll_ms=10, peer_fin=False)
    assert orphan.tw_entered == 1 and orphan.time_wait_max_s is None
    seen = analyze.server_side(EVENTS, "server", poll_ms=10)
    assert seen.time_wait_s == pytest.approx(60.63) and seen.time_wait_max_s is None


def test_a_field_the_record_does_not_have_is_an_error():
    r = analysed()
    with pytest.raises((AttributeError, TypeError)):
        setattr(r, "tw_gone_sec", 1)  # noqa: B010 (the misspelling is the point)
    with pytest.raises(TypeError):
        TrialResult("t000", 0, "c", 0, {}, tw_gone_sec=1)


def test_reconnects_tried_until_one_got_through_and_an_older_agents_single_try():
    close = {"src": "client", "ev": "close", "mono": 5.0, "side": "client"}
    agent = [{"src": "client-agent", "ev": "tw_appear", "mono": 5.01, "lport": 40000, "expires_ms": 60000,
              "window_ms": 10.0},
             {"src": "client-agent", "ev": "reconnect", "mono": 5.02, "ok": False, "lport": 0, "step": "connect",
              "errno": "Cannot assign requested address"},
             {"src": "client-agent", "ev": "reconnect", "mono": 6.03, "ok": True, "lport": 40000, "step": "",
              "errno": "", "failures": 100, "connected": True, "window_ms": 10.0}]
    c = analyze.client_side([close, *agent], "client")
    assert (c.reconnect_s, c.reconnect_port, c.reconnect_same_port, c.reconnect_failures) == (1.03, 40000, 1, 100)
    assert c.reconnect_error == "connect: Cannot assign requested address" and c.reconnect_connected is True
    older = analyze.client_side([close, *agent[:2]], "client")  # it tried once, and failed
    assert older.reconnect_s is None and older.reconnect_error == "connect: Cannot assign requested address"


def test_fin_wait2_from_the_first_poll_that_saw_it_to_the_first_that_did_not():
    events = [{"src": "agent", "ev": "close", "mono": 5.0, "side": "server", "how": "SIGINT"},
              *({"src": "agent", "ev": "sockets", "mono": t, "states": s} for t, s in (
                  (5.0, ["ESTABLISHED"]), (5.01, ["FIN_WAIT2"]), (10.2, []), (10.3, ["LISTEN"])))]
    f = analyze.server_side(events, "server", poll_ms=10)
    assert (f.fin_wait2_s, f.fin_wait2_gone_s) == (5.19, 5.2)
    assert analyze.server_side(events[:3], "server", poll_ms=10).fin_wait2_s is None  # not over


def test_a_trial_not_applicable_on_its_kernel_is_neither_measured_nor_failed():
    why = "Linux 6.1.0 has no net.ipv4.tcp_tw_reuse_delay in a network namespace"
    r = analysed([{**EVENTS[-1], "not_applicable": why}], None)
    assert (r.status, r.why, r.ok, r.failed, r.expectations) == ("not applicable", why, False, False, ())
    assert TrialResult.from_json(r.to_json()) == r
