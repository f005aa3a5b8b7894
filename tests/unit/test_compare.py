import dataclasses
import xml.etree.ElementTree as ET

import pytest

from harness import compare
from harness.errors import UsageError
from harness.record import TrialResult
from harness.report import junit

PARAMS = {"close_first": "server"}


def trial(i, case="c", tw=60.5, window=10.0, close=1000.0, **figures):
    values = {"time_wait_s": tw, "tw_gone_s": tw, "rebind_plain_s": tw, "restart_s": tw, "bind_errors": 600,
              "fin_retransmits": 0, **figures}
    return TrialResult(f"t{i:03d}", i, case, 0, PARAMS, status="ok", close_mono=close, window_max_ms=window,
                       **values)


def side(results, close_phase=None, **manifest):
    return compare.Side("run", {"kernel": "6.18", "close_phase": close_phase, **manifest}, results)


def rows(base, new, **thresholds):
    c = compare.compare(base, new, thresholds)
    return {r.figure: r for r in c.rows}


def test_threshold_forms():
    assert compare.Threshold.parse("time_wait_s=0.5") == compare.Threshold("time_wait_s", 0.5, False)
    assert compare.Threshold.parse("restart_s=10%") == compare.Threshold("restart_s", 0.1, True)
    for bad in ("time_wait_s", "tw=1", "time_wait_s=x", "time_wait_s=-1", "time_wait_s=nan", "time_wait_s=1e99"):
        with pytest.raises(UsageError, match="--threshold"):
            compare.Threshold.parse(bad)


def test_a_difference_the_timer_wheel_can_make_is_the_same():
    # one TIME_WAIT each, 1.5 s apart: within the wheel's grid (5.12 s until the ends show which)
    r = rows(side([trial(0, tw=60.5)]), side([trial(0, tw=62.0)]))["time_wait_s"]
    assert (r.verdict, r.threshold, r.why_threshold) == ("same", 5.12, "timer wheel 5.120 s")


def test_on_one_close_phase_only_the_poll_window_is_the_floor():
    r = rows(side([trial(0, tw=60.5)], close_phase=[2.048, 1.5]),
             side([trial(0, tw=60.6, window=12.0)], close_phase=[2.048, 1.5]))["time_wait_s"]
    assert (r.verdict, r.threshold, r.test) == ("regressed", 0.012, "ranges apart")
    assert r.diff == pytest.approx(0.1)


def test_the_grid_read_from_the_ends_narrows_the_floor():
    ends = [(1000.0 + 2.048 * k, 60.3) for k in (0, 1, 3, 4)]  # all end on a 2.048 s grid
    base = side([trial(i, tw=tw, close=c) for i, (c, tw) in enumerate(ends)])
    new = side([trial(i, tw=tw + 3.0, close=c) for i, (c, tw) in enumerate(ends)])
    r = rows(base, new)["time_wait_s"]
    assert (r.threshold, r.verdict) == (2.048, "regressed")


def test_counts_and_overlap_and_improvement():
    got = rows(side([trial(0, fin_retransmits=9), trial(1, fin_retransmits=9, tw=80.0)]),
               side([trial(0, fin_retransmits=8), trial(1, fin_retransmits=8, tw=62.0)]))
    assert got["fin_retransmits"].verdict == "improved"
    assert got["rebind_plain_s"].verdict == "inconclusive"  # ranges overlap beyond the threshold


def test_with_enough_trials_a_rank_test_decides():
    base = side([trial(i, case="c", rebind_plain_s=0.001 + i * 1e-4, tw=None, tw_gone_s=None) for i in range(6)])
    new = side([trial(i, case="c", rebind_plain_s=1.4 + i * 1e-3, tw=None, tw_gone_s=None) for i in range(6)])
    r = rows(base, new)["rebind_plain_s"]
    assert r.verdict == "regressed" and r.test.startswith("Mann-Whitney U p=")


def test_a_figure_that_never_happened_before_is_a_change():
    r = rows(side([trial(0, tw=None, tw_gone_s=None)]), side([trial(0, tw=60.5)]))["time_wait_s"]
    assert r.verdict == "regressed" and r.base is None


def test_user_thresholds_never_go_below_the_instrument():
    r = rows(side([trial(0, rebind_plain_s=1.0)]), side([trial(0, rebind_plain_s=1.3)]),
             rebind_plain_s=compare.Threshold("rebind_plain_s", 0.5, True))["rebind_plain_s"]
    assert r.verdict == "same" and r.threshold == 0.5 and r.why_threshold == "--threshold rebind_plain_s=50%"
    # `times`: every figure in seconds at once (a slower machine), never a count
    got = rows(side([trial(0, tw=None, tw_gone_s=None, rebind_plain_s=0.01, restart_s=0.01, fin_retransmits=0)]),
               side([trial(0, tw=None, tw_gone_s=None, rebind_plain_s=0.15, restart_s=0.18, fin_retransmits=1)]),
               times=compare.Threshold.parse("times=0.25"))
    assert got["rebind_plain_s"].verdict == got["restart_s"].verdict == "same"
    assert got["restart_s"].why_threshold == "--threshold times" and got["fin_retransmits"].verdict == "regressed"


def test_environment_differences():
    a = {"kernel": "6.18", "sysctls": {"net.ipv4.tcp_fin_timeout": "60"}, "images": {"ids": {"probe": "a"}}}
    b = {"kernel": "6.1", "sysctls": {"net.ipv4.tcp_fin_timeout": "30"}, "images": {"ids": {"probe": "b"}}}
    assert compare.env_diff(a, b) == [("kernel", "6.18", "6.1"), ("sysctl net.ipv4.tcp_fin_timeout", "60", "30"),
                                      ("image probe", "a", "b")]


def counts(xml):
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        for kind, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            assert int(suite.get(attr)) == sum(1 for c in cases if c.find(kind) is not None)
        assert all(c.get("classname") and c.get("name") for c in cases)
    return {k: int(root.get(k)) for k in ("tests", "failures", "errors", "skipped")}


def test_junit_of_a_comparison():
    c = compare.compare(side([trial(0, tw=60.5), trial(1, case="d")]), side([trial(0, tw=90.0), trial(1, case="d")]),
                        {})
    c.env.append(("kernel", "6.18", "6.1"))
    xml = junit.compare(c, "a", "b", require_same_env=True)
    assert counts(xml) == {"tests": 1 + len(c.rows), "failures": 1 + len(c.regressed), "errors": 0, "skipped": 0}
    failure = ET.fromstring(xml).find(".//testcase[@name='time_wait_s'][@classname='c']/failure")
    assert failure.get("message").startswith("time_wait_s regressed: baseline 60.5, new 90.0")


def test_junit_of_a_run():
    ok = trial(0, expectations=[{"expect": 0, "name": "n", "check": "time_wait_s >= 110", "verdict": "fail",
                                 "value": 60.5, "detail": "time_wait_s is 60.5"}])
    bad = TrialResult("t001", 1, "c", 0, PARAMS, status="failed", why="echo exchange: client exited",
                      expectations=[dataclasses.replace(ok.expectations[0], verdict="no data", value=None,
                                                        detail="the trial did not measure")])
    xml = junit.run("exp", [ok, bad])
    assert counts(xml) == {"tests": 3, "failures": 1, "errors": 1, "skipped": 0}
    root = ET.fromstring(xml)
    assert root.find(".//testcase[@name='t001 measured']/error").get("message") == "echo exchange: client exited"
    assert "t000 time_wait_s is 60.5" in root.find(".//testcase[@name='expect[0] time_wait_s >= 110']/failure").get("message")


def test_a_case_one_kernel_could_not_run_is_said_not_compared():
    why = "Linux 6.1.0 has no net.ipv4.tcp_tw_reuse_delay in a network namespace"
    skipped = dataclasses.replace(trial(0, "delay"), status="not applicable", why=why)
    c = compare.compare(side([trial(0, "delay"), trial(1)]), side([skipped, trial(1)]), {})
    assert c.not_applicable == [("delay", "new", why)] and {r.case for r in c.rows} == {"c"}
    from harness.report.summary import compare_text

    assert f"Not applicable, so not compared:\n  delay (new): {why}" in compare_text(c)


def test_a_label_is_judged_by_what_it_names_and_a_change_fails_like_a_regression():
    # the ISN a listener got from a TIME_WAIT: its rule's offset, or a fresh one (any other number)
    got = rows(side([trial(0, same_port_isn_offset=65537, probe_bind_errno="EADDRINUSE", server_exit_status=130)]),
               side([trial(0, same_port_isn_offset=7115795, probe_bind_errno="EADDRINUSE", server_exit_status=130)]))
    isn = got["same_port_isn_offset"]
    assert (isn.verdict, isn.base_named, isn.new_named) == ("changed", "the TIME_WAIT's (+65537)", "a fresh one")
    assert got["probe_bind_errno"].verdict == got["server_exit_status"].verdict == "same"
    c = compare.compare(side([trial(0, same_port_isn_offset=65537)]), side([trial(0, same_port_isn_offset=1)]), {})
    assert [r.figure for r in c.regressed] == ["same_port_isn_offset"]
    # two fresh ISNs are the same finding; ports and inferences are not judged at all
    got = rows(side([trial(0, same_port_isn_offset=10133311, client_tw_port=40000, old_reuseaddr_inferred=False)]),
               side([trial(0, same_port_isn_offset=28303775, client_tw_port=41000, old_reuseaddr_inferred=True)]))
    assert got["same_port_isn_offset"].verdict == "same"
    assert "client_tw_port" not in got and "old_reuseaddr_inferred" not in got


def test_a_time_wait_no_poll_timed_is_compared_by_its_upper_bound_and_paced_counts_not_at_all():
    short = trial(0, tw=None, tw_gone_s=None, time_wait_max_s=0.033, rebind_plain_s=0.04, restart_s=0.04,
                  same_port_tw_acks=120, tw_peak=0)
    r = rows(side([trial(0, tw=0.1, window=100.0, same_port_tw_acks=176, tw_peak=1)]), side([short]))
    assert r["time_wait_s"].verdict == "same" and r["time_wait_s"].new.median == 0.033
    assert not {"same_port_tw_acks", "tw_peak", "bind_errors"} & set(r)


def test_a_fin_wait2_timeout_ends_on_the_timer_wheel_as_a_time_wait_does():
    # tcp_fin_timeout's FIN_WAIT2 is a timewait socket on the same wheel: 20.42 s and 21.53 s are one grid step apart
    def fw2(i, s):
        return trial(i, tw=None, tw_gone_s=None, fin_wait2_s=s, fin_wait2_gone_s=s, rebind_plain_s=s + 0.05)
    got = rows(side([fw2(0, 20.42)]), side([fw2(0, 21.53)]))
    assert got["fin_wait2_s"].verdict == got["rebind_plain_s"].verdict == "same"
    assert got["fin_wait2_s"].why_threshold.startswith("timer wheel")


def test_the_wheel_rounds_only_a_time_wait_its_timer_ended():
    # the client's TIME_WAIT taken over by a reconnect after 1.0 s (6.18's tcp_tw_reuse_delay) or
    # 0.27 s (the 1 Hz rule before 6.14): not a 60 s timer, and the difference is the kernel's
    def reused(i, at):
        return trial(i, tw=None, tw_gone_s=None, client_tw_s=at, client_tw_gone_s=at, reconnect_s=at)
    r = rows(side([reused(0, 1.0)]), side([reused(0, 0.27)]))["client_tw_s"]
    assert r.verdict == "improved" and r.why_threshold.startswith("poll window")
    # a client TIME_WAIT its timer ended, 60.2 s against 61.4 s: one step of the wheel
    r = rows(side([reused(0, 60.2)]), side([reused(0, 61.4)]))["client_tw_s"]
    assert r.verdict == "same" and r.why_threshold.startswith("timer wheel 5.12")


def test_one_odd_trial_makes_a_label_inconclusive_not_changed():
    base = side([trial(i, probe_bind_errno="EADDRINUSE") for i in range(6)])
    new = side([trial(i, probe_bind_errno="EADDRINUSE" if i else None) for i in range(6)])
    r = rows(base, new)["probe_bind_errno"]
    assert (r.verdict, r.base_named, r.new_named) == ("inconclusive", "EADDRINUSE", "- | EADDRINUSE")
    assert not compare.compare(base, new, {}).regressed


def test_a_reuse_that_ended_a_time_wait_early_gets_no_wheel_slack():
    # 1.00 s against 1.11 s over six trials each: a TIME_WAIT a reconnect took over, not its timer
    def reused(i, at):
        return trial(i, tw=None, tw_gone_s=None, client_tw_s=at, client_tw_gone_s=at, reconnect_s=at)
    r = rows(side([reused(i, 1.0 + i * 1e-3) for i in range(6)]), side([reused(i, 1.11 + i * 1e-3) for i in range(6)]))
    assert r["reconnect_s"].verdict == "regressed" and r["reconnect_s"].why_threshold.startswith("poll window")


def test_junit_and_the_summary_show_a_changed_label():
    c = compare.compare(side([trial(0, same_port_isn_offset=65537)]), side([trial(0, same_port_isn_offset=4241615)]), {})
    xml = junit.compare(c, "a", "b", require_same_env=False)
    assert 'type="changed"' in xml and "baseline the TIME_WAIT's (+65537), new a fresh one" in xml
    from harness.report import summary
    assert "CHANGED (values differ)" in summary.compare_text(c)


@pytest.mark.parametrize("text", ["bind_errors=5", "tw_peak=1", "client_tw_port=1"])
def test_a_threshold_for_a_figure_compare_does_not_judge_is_refused(text):
    with pytest.raises(UsageError, match="FIGURE one of"):
        compare.Threshold.parse(text)


def test_a_fin_wait2_no_poll_saw_was_briefer_than_a_poll_not_never():
    # the client's ACK and FIN came together here (no FIN_WAIT2 seen), 26 ms apart on a slower machine
    got = rows(side([trial(0, fin_wait2_s=None, window=20.0)]), side([trial(0, fin_wait2_s=0.026, window=30.0)]))
    assert got["fin_wait2_s"].verdict == "same" and got["fin_wait2_s"].base.median == 0.0
