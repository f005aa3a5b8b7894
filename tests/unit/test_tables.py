import csv
import io

from harness.record import TrialResult
from harness.report import tables


def trial(i, case, status="ok", tw=60.0, **kw):
    figures = {"time_wait_s": tw, "rebind_plain_s": tw, "rebind_reuseaddr_s": 0.01, "restart_s": tw,
               "bind_errors": 600, "final_acks_dropped": None, "fin_retransmits": 0, **kw}
    return TrialResult(trial=f"t{i:03d}", index=i, case=case, repeat=0, status=status,
                       why="" if status == "ok" else "boom", params={"close_first": "server"}, **figures)


TRIALS = [trial(0, "A", tw=60.0), trial(1, "A", tw=62.0), trial(2, "A", tw=61.0),
          trial(3, "B", tw=None, rebind_plain_s=0.0), trial(4, "B", status="failed", tw=None)]


def test_case_rows_show_median_and_range_and_count_failures_apart():
    headers, rows = tables.case_rows(TRIALS)
    assert headers[0] == "case" and headers[-1] == "trials ok"
    assert "final ACKs dropped" not in headers  # no trial has a value for it
    a, b = rows
    assert a[headers.index("TIME_WAIT (s)")] == "61.000 [60.000-62.000]"
    assert a[headers.index("bind() errors")] == "600"
    assert a[-1] == "3/3"
    assert b[headers.index("TIME_WAIT (s)")] == "-"
    assert b[-1] == "1/2"


def test_a_time_wait_no_poll_timed_shows_as_shorter_than_its_bound_not_as_never():
    short = [trial(0, "RST", tw=None, time_wait_max_s=0.011), trial(1, "RST", tw=None, time_wait_max_s=0.0105),
             trial(2, "mixed", tw=60.0), trial(3, "mixed", tw=None, time_wait_max_s=0.01),
             trial(4, "never", tw=None)]
    headers, rows = tables.case_rows(short)
    col = headers.index("TIME_WAIT (s)")
    assert [r[col] for r in rows] == ["< 0.011", "60.000; 1 < 0.010", "-"]


def test_terminal_and_markdown_list_failed_trials():
    assert "Failed trials" in tables.terminal(TRIALS) and "boom" in tables.terminal(TRIALS)
    md = tables.markdown("exp", "what it is", TRIALS)
    assert md.startswith("# exp\n") and "| case" in md and "## Failed trials" in md


def test_stats_csv_has_n_median_min_max_stdev():
    rows = list(csv.DictReader(io.StringIO(tables.stats_csv(TRIALS))))
    tw = next(r for r in rows if r["case"] == "A" and r["figure"] == "time_wait_s")
    assert (tw["n"], tw["median"], tw["min"], tw["max"], tw["stdev"]) == ("3", "61.0", "60.0", "62.0", "1.0")
    b = next(r for r in rows if r["case"] == "B" and r["figure"] == "time_wait_s")
    assert (b["n"], b["trials"], b["failed"]) == ("0", "2", "1")


def test_trials_csv_keeps_every_raw_value():
    rows = list(csv.DictReader(io.StringIO(tables.trials_csv(TRIALS))))
    assert [r["time_wait_s"] for r in rows[:3]] == ["60.0", "62.0", "61.0"]
    assert rows[4]["status"] == "failed" and rows[0]["params.close_first"] == "server"


def test_a_case_not_applicable_on_a_kernel_has_its_row_and_its_reason_but_is_no_failure():
    why = "Linux 6.1.0 has no net.ipv4.tcp_tw_reuse_delay in a network namespace"
    ts = [trial(0, "A"), trial(1, "delay", status="not applicable", tw=None)]
    ts[1] = TrialResult(**{**ts[1].to_json(), "why": why})
    headers, rows = tables.case_rows(ts)
    assert rows[1] == ["delay", *["n/a"] * (len(headers) - 2), "not applicable"]
    assert tables.failures(ts) == [] and tables.not_applicable(ts) == [["delay", why]]
    out = tables.terminal(ts)
    assert "Failed trials" not in out and "Not applicable (not run):" in out and why in out
    # every summary lists it; the statistics count it neither as a trial nor as a failure
    from harness.report import summary
    md = summary.run_markdown("x", ts, "report.html")
    assert "### Not applicable (not run)" in md and why in md and "did not measure" not in md
    stats = {(r["case"], r["figure"]): r for r in csv.DictReader(io.StringIO(tables.stats_csv(ts)))}
    assert (stats[("delay", "time_wait_s")]["trials"], stats[("delay", "time_wait_s")]["failed"]) == ("0", "0")


def test_a_run_where_no_case_applied_exits_3_and_one_where_some_did_exits_0():
    from harness.cli import run_exit
    skipped = trial(1, "delay", status="not applicable", tw=None)
    assert run_exit([skipped]) == 3
    assert run_exit([trial(0, "A"), skipped]) == 0
