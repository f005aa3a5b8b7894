import dataclasses
from pathlib import Path

import pytest

from harness import analyze, expect, plan, spec
from harness.errors import SpecError
from harness.record import TrialResult
from harness.report import tables

from .lost_ack_trial import EVENTS, PCAP

BASE = """name: t
description: d
matrix:
  close_first: [server, client]
  final_ack_loss: [0, all]
"""


def parse(text):
    return spec.parse(BASE + text, "t.yaml")


def test_expectation_forms():
    exp = parse("""expect:
  - where: {final_ack_loss: all, close_first: server}
    time_wait_s: {min: 110}
    fin_retransmits: 9
    final_acks_dropped: {of: fin_retransmits, min: 1, max: 1}
  - where: {close_first: client}
    time_wait_s: null
    name: no TIME_WAIT on the server
  - rebind_plain_s: {within: 0.02, of: tw_gone_s}
""")
    a, b, c = exp.expect
    assert a.where == (("final_ack_loss", "all"), ("close_first", "server"))
    assert a.where_text() == 'final_ack_loss="all", close_first="server"'
    assert [x.text() for x in a.bounds] == ["time_wait_s >= 110", "fin_retransmits == 9",
                                            "1 <= final_acks_dropped - fin_retransmits <= 1"]
    assert b.name == "no TIME_WAIT on the server" and b.bounds[0].never
    assert c.where == () and c.bounds[0].text() == "|rebind_plain_s - tw_gone_s| <= 0.02"
    assert c.name == "|rebind_plain_s - tw_gone_s| <= 0.02" and c.where_text() == "every case"


@pytest.mark.parametrize("text, field, allowed", [
    ("expect: {time_wait_s: 1}\n", "expect", "non-empty list"),
    ("expect:\n  - {where: {case: x}}\n", "expect[0]", "bounds no figure"),
    ("expect:\n  - {tw_seconds: 1}\n", "expect[0].tw_seconds", "unknown field"),
    ("expect:\n  - {time_wait_s: 60}\n", "expect[0].time_wait_s", "bound a time with min and max"),
    ("expect:\n  - {time_wait_s: {within: 1}}\n", "expect[0].time_wait_s", "within needs of"),
    ("expect:\n  - {time_wait_s: {min: 2, max: 1}}\n", "expect[0].time_wait_s", "min 2 is above max 1"),
    ("expect:\n  - {time_wait_s: {of: nothing, min: 1}}\n", "expect[0].time_wait_s.of", "allowed: time_wait_s"),
    ("expect:\n  - {time_wait_s: {}}\n", "expect[0].time_wait_s", "bounds nothing"),
    ("expect:\n  - {time_wait_s: 'soon'}\n", "expect[0].time_wait_s", "null (never happens)"),
    ("expect:\n  - {where: {final_ack_loss: most}, time_wait_s: null}\n", "expect[0].where.final_ack_loss", '"all"'),
    ("expect:\n  - {where: {colour: red}, time_wait_s: null}\n", "expect[0].where.colour", "unknown field"),
])
def test_expectation_errors_name_the_field_and_what_is_allowed(text, field, allowed):
    with pytest.raises(SpecError) as exc:
        parse(text)
    assert str(exc.value).startswith(f"t.yaml: {field}: ") and allowed in str(exc.value)


def test_an_expectation_for_no_case_is_refused_before_anything_runs():
    exp = parse("expect:\n  - {where: {family: ipv6}, time_wait_s: null}\n")
    with pytest.raises(SpecError, match="expect\\[0\\].where: matches none of the 4 cases"):
        plan.trials(exp)


def judge(bound_yaml, **figures):
    (e,) = parse(f"expect:\n  - {bound_yaml}\n").expect
    return expect.judge(e.bounds[0], TrialResult("t000", 0, "c", 0, {}, **figures))


def test_judging_a_bound():
    assert judge("{time_wait_s: {min: 110}}", time_wait_s=115.6) == ("pass", 115.6, "")
    assert judge("{time_wait_s: {min: 110}}", time_wait_s=60.5) == ("fail", 60.5, "time_wait_s is 60.500")
    assert judge("{time_wait_s: {min: 110}}", time_wait_s=None) == ("fail", None, "time_wait_s never happened")
    assert judge("{time_wait_s: null}", time_wait_s=None)[0] == "pass"
    assert judge("{time_wait_s: null}", time_wait_s=61.0) == ("fail", 61.0, "time_wait_s happened: 61")
    assert judge("{fin_retransmits: 9}", fin_retransmits=8) == ("fail", 8, "fin_retransmits is 8")
    assert judge("{same_port_isn_offset: 65537}", same_port_isn_offset=10133311) == (
        "fail", 10133311, "same_port_isn_offset is 10133311")  # a count whole, not 1.01333e+07
    v, x, _ = judge("{rebind_plain_s: {within: 0.02, of: tw_gone_s}}", rebind_plain_s=60.51, tw_gone_s=60.5)
    assert v == "pass" and x == pytest.approx(0.01)
    assert judge("{rebind_plain_s: {within: 0.02, of: tw_gone_s}}", rebind_plain_s=1, tw_gone_s=None)[0] == "fail"


def test_a_time_timed_by_a_late_poll_misses_a_bound_only_by_more_than_its_window():
    # The catalog's 8-connection TIME_WAIT, first seen by a poll 80 ms late: it began up to 80 ms
    # before the poll, so 59.9 s between the polls cannot say the kernel's 60 s was cut short.
    late = {"time_wait_s": 59.87, "window_max_ms": 80.0, "coarse": True}
    assert judge("{time_wait_s: {min: 59.9, max: 65.2}}", **late) == (
        "pass", 59.87, "59.870, within a late poll's 80 ms window")
    assert judge("{time_wait_s: {min: 59.9}}", **{**late, "time_wait_s": 59.8})[0] == "fail"
    assert judge("{time_wait_s: {min: 59.9}}", **{**late, "coarse": False}) == ("fail", 59.87, "time_wait_s is 59.870")
    assert judge("{rebind_plain_s: {within: 0.02, of: tw_gone_s}}", rebind_plain_s=60.56, tw_gone_s=60.5,
                 window_max_ms=50.0, coarse=True)[0] == "pass"
    assert judge("{bind_errors: {max: 10}}", bind_errors=11, window_max_ms=50.0, coarse=True)[0] == "fail"  # a count
    assert judge("{last_fin_s: {max: 1}}", last_fin_s=1.02, window_max_ms=50.0, coarse=True)[0] == "fail"  # the capture's


def test_a_time_wait_too_short_to_time_happened_and_only_a_maximum_can_judge_it():
    short = {"time_wait_s": None, "time_wait_max_s": 0.011}
    why = "time_wait_s happened, shorter than 0.011 s (counted by the kernel, seen by no poll)"
    assert judge("{time_wait_s: null}", **short) == ("fail", None, why)
    assert judge("{time_wait_s: {max: 0.05}}", **short) == ("pass", 0.011, "< 0.011")
    assert judge("{time_wait_s: {max: 0.005}}", **short) == ("fail", None, why)
    assert judge("{time_wait_s: {min: 59.9}}", **short) == ("fail", None, why)
    assert judge("{time_wait_max_s: {max: 0.02}}", **short) == ("pass", 0.011, "")


EXP = spec.parse("""name: t
description: d
cases:
  - {name: all lost, close_first: server, final_ack_loss: all}
expect:
  - {where: {final_ack_loss: all}, time_wait_s: {min: 110}, fin_retransmits: 2}
  - {where: {case: all lost}, restart_s: {max: 1}}
""", "t.yaml")


def test_each_trial_carries_its_outcomes_and_the_case_gathers_them():
    (t,) = plan.trials(EXP)
    r = analyze.trial(EXP, t, EVENTS, PCAP)
    assert [(o.check, o.verdict) for o in r.expectations] == [
        ("time_wait_s >= 110", "fail"), ("fin_retransmits == 2", "pass"), ("restart_s <= 1", "fail")]
    broken = dataclasses.replace(r, trial="t001", index=1, status="failed",
                                 expectations=[dataclasses.replace(o, verdict="no data", value=None)
                                               for o in r.expectations])
    (tw, fins, _restart) = expect.by_case([r, broken])
    assert (tw.case, tw.verdict, [x[:2] for x in tw.trials]) == ("all lost", "fail", [("t000", "fail"), ("t001", "no data")])
    assert fins.verdict == "pass"
    rows = tables.expectation_rows([r])
    assert rows[0][:4] == ["FAIL", "expect[0] time_wait_s >= 110 and fin_retransmits == 2", "time_wait_s >= 110",
                           "all lost"]
    assert rows[0][4] == "t000 time_wait_s is 60.630"


def test_where_matches_the_setting_in_force():
    exp = spec.parse("""name: t
description: d
cases:
  - {name: both, server_reuseaddr: true}
  - {name: old only, server_reuseaddr: true, restart_reuseaddr: false}
expect:
  - {where: {restart_reuseaddr: true}, restart_s: {max: 1}}
""", "t.yaml")
    (e,) = exp.expect
    assert [c.name for c in plan.cases(exp) if e.applies(c)] == ["both"]


def test_where_picks_sysctls_by_those_it_names():
    exp = spec.parse("""name: t
description: d
cases:
  - {name: a, client_sysctls: {net.ipv4.tcp_tw_reuse: 1, net.ipv4.tcp_timestamps: 1}}
  - {name: b, client_sysctls: {net.ipv4.tcp_tw_reuse: 1, net.ipv4.tcp_timestamps: 0}}
  - {name: c, client_sysctls: {net.ipv4.ip_local_port_range: "40000 40000", net.ipv4.tcp_tw_reuse: 1}}
expect:
  - {where: {client_sysctls: {net.ipv4.tcp_tw_reuse: 1}}, time_wait_s: null}
  - {where: {client_sysctls: {net.ipv4.tcp_tw_reuse: 1, net.ipv4.tcp_timestamps: 0}}, time_wait_s: null}
  - {where: {client_sysctls: {net.ipv4.ip_local_port_range: "40000  40000"}}, time_wait_s: null}
""", "t.yaml")
    assert [[c.name for c in plan.cases(exp) if e.applies(c)] for e in exp.expect] == [["a", "b", "c"], ["b"], ["c"]]


def test_where_with_no_sysctls_picks_the_cases_that_set_none():
    exp = spec.load(Path(__file__).parents[2] / "experiments" / "tw_buckets.yaml")
    (e, *_) = exp.expect
    assert [c.params.server_sysctls for c in plan.cases(exp) if e.applies(c)] == [()]
