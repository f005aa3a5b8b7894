import csv
import io

import pytest

from harness import analyze, report


def ev(name, mono, **kw):
    return {"src": "agent", "ev": name, "mono": mono, **kw}


EVENTS = [
    ev("close", 100.0, side="server"),
    ev("tw_appear", 100.01, expires_ms=60000),
    ev("tw_timer_restart", 100.2, expires_ms=60000),
    ev("restart_fail", 100.1, attempt=1, stderr="bind() error"),
    ev("restart_fail", 100.2, attempt=2, stderr="bind() error"),
    ev("bind_ok", 100.02, reuseaddr=True, failures=1),
    ev("tw_gone", 160.5),
    ev("bind_ok", 160.51, reuseaddr=False, failures=6000),
    ev("restart_up", 160.6, attempt=3),
    ev("done", 160.61),
]


def test_figures_are_seconds_after_the_close():
    f = analyze.trial_figures(EVENTS, "server")
    assert f["tw_appear_s"] == 0.01
    assert f["time_wait_s"] == pytest.approx(160.5 - 100.01)
    assert f["rebind_plain_s"] == 60.51
    assert f["rebind_reuseaddr_s"] == 0.02
    assert f["restart_s"] == 60.6
    assert f["bind_errors"] == 2
    assert f["tw_timer_restarts"] == 1
    assert analyze.agent_outcome(EVENTS) == ("ok", "")


def test_no_time_wait_when_the_client_closes_first():
    events = [{"src": "client", "ev": "close", "mono": 5.0, "side": "client"},
              ev("bind_ok", 5.001, reuseaddr=False), ev("timeout", 9.0, after_s=4)]
    f = analyze.trial_figures(events, "client")
    assert f["time_wait_s"] is None and f["rebind_plain_s"] == 0.001
    assert analyze.agent_outcome(events) == ("failed", "not over after 4 s (max_wait_s)")


def test_summary():
    s = analyze.summarize([3, None, 1, 2])
    assert (s.n, s.median, s.min, s.max, s.stdev) == (3, 2.0, 1.0, 3.0, 1.0)
    assert analyze.summarize([None]) is None


def trial(i, case, status="ok", tw=60.0, **kw):
    return {"trial": f"t{i:03d}", "index": i, "case": case, "repeat": 0, "status": status,
            "why": "" if status == "ok" else "boom", "params": {"close_first": "server"},
            "time_wait_s": tw, "rebind_plain_s": tw, "rebind_reuseaddr_s": 0.01, "restart_s": tw,
            "bind_errors": 600, "final_acks_dropped": None, "fin_retransmits": 0, **kw}


TRIALS = [trial(0, "A", tw=60.0), trial(1, "A", tw=62.0), trial(2, "A", tw=61.0),
          trial(3, "B", tw=None, rebind_plain_s=0.0), trial(4, "B", status="failed", tw=None)]


def test_case_rows_show_median_and_range_and_count_failures_apart():
    headers, rows = report.case_rows(TRIALS)
    assert headers[0] == "case" and headers[-1] == "trials ok"
    assert "final ACKs dropped" not in headers  # no trial has a value for it
    a, b = rows
    assert a[headers.index("TIME_WAIT (s)")] == "61.000 [60.000-62.000]"
    assert a[headers.index("bind() errors")] == "600"
    assert a[-1] == "3/3"
    assert b[headers.index("TIME_WAIT (s)")] == "-"
    assert b[-1] == "1/2"


def test_terminal_and_markdown_list_failed_trials():
    assert "Failed trials" in report.terminal(TRIALS) and "boom" in report.terminal(TRIALS)
    md = report.markdown("exp", "what it is", TRIALS)
    assert md.startswith("# exp\n") and "| case" in md and "## Failed trials" in md


def test_stats_csv_has_n_median_min_max_stdev():
    rows = list(csv.DictReader(io.StringIO(report.stats_csv(TRIALS))))
    tw = next(r for r in rows if r["case"] == "A" and r["figure"] == "time_wait_s")
    assert (tw["n"], tw["median"], tw["min"], tw["max"], tw["stdev"]) == ("3", "61.0", "60.0", "62.0", "1.0")
    b = next(r for r in rows if r["case"] == "B" and r["figure"] == "time_wait_s")
    assert (b["n"], b["trials"], b["failed"]) == ("0", "2", "1")


def test_trials_csv_keeps_every_raw_value():
    rows = list(csv.DictReader(io.StringIO(report.trials_csv(TRIALS))))
    assert [r["time_wait_s"] for r in rows[:3]] == ["60.0", "62.0", "61.0"]
    assert rows[4]["status"] == "failed" and rows[0]["params.close_first"] == "server"
