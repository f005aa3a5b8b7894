import dataclasses
import re
from pathlib import Path

from harness import analyze, plan, spec
from harness.record import TrialResult
from harness.report import headline, pages

from .lost_ack_trial import EVENTS, PCAP

HOSTILE = spec.parse("""name: t
description: 'A <script>alert(1)</script> & a | pipe'
cases:
  - {name: '<img src=x onerror=alert(2)>', close_first: server, final_ack_loss: all}
""", "t.yaml")
MANIFEST = {"run_id": "abc", "kernel": "6.18", "engine_version": "20.10", "command": "harness run t.yaml",
            "fault_backend": "nftables", "fault_backend_why": "auto", "sysctls": {"net.ipv4.tcp_fin_timeout": "60"},
            "images": {"base": "b", "base_origin": "given", "ids": {"probe": "sha256:1"}}}


def built():
    (t,) = plan.trials(HOSTILE)
    result = analyze.trial(HOSTILE, t, EVENTS, PCAP)
    return result, pages.build(Path("/runs/t/1"), HOSTILE, MANIFEST, [result], {t.id: EVENTS})


def test_the_report_and_every_file_beside_it():
    _result, files = built()
    assert {"report.html", "report.md", "results.md", "results.csv", "trials.csv", "figures/cases.svg",
            "figures/t000-sequence.svg", "figures/t000-timeline.svg"} <= set(files)
    html = files["report.html"]
    # in order: what was run and the headline, the table, the figures, failures, provenance
    order = [html.index(s) for s in ('id="what"', 'class="headline"', 'id="results"', 'id="figures"',
                                     'id="failed"', 'id="provenance"')]
    assert order == sorted(order)
    assert html.count("<svg") == 3  # the cases, and the one trial's two figures inline
    assert "harness run t.yaml" in html and "nftables ingress of the client" in html


def test_nothing_is_fetched_when_the_report_is_opened():
    _, files = built()
    html = files["report.html"]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "@import" not in html and not re.search(r"url\((?!#)", html)  # only references within the page


def test_text_from_the_experiment_file_is_escaped():
    _, files = built()
    html, md = files["report.html"], files["report.md"]
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<script>" not in md and "<img" not in md and "&lt;script&gt;" in md


def result(case, index, params, **figures):
    return TrialResult(f"t{index:03d}", index, case, 0, params, status="ok", **figures)


BASE = {"close_first": "server", "server_reuseaddr": False, "restart_reuseaddr": False, "final_ack_loss": 0,
        "client_close": "close", "family": "ipv4"}


def test_headline_from_the_data():
    rs = [result("plain", 0, BASE, rebind_plain_s=60.8, time_wait_s=60.8, restart_s=60.9),
          result("all lost", 1, {**BASE, "final_ack_loss": "all"}, rebind_plain_s=115.6, restart_s=115.7),
          result("both", 2, {**BASE, "server_reuseaddr": True, "restart_reuseaddr": True},
                 time_wait_s=61.0, restart_s=0.01),
          result("restart only", 3, {**BASE, "restart_reuseaddr": True}, time_wait_s=61.0, restart_s=61.1),
          result("client", 4, {**BASE, "close_first": "client"}, restart_s=0.002)]
    assert headline.sentences(rs) == [
        "With every final ACK lost, the port stayed unusable for 115.6 s instead of 60.8 s.",
        "SO_REUSEADDR on both sockets let the server restart in 0.01 s, while the old socket stayed in "
        "TIME_WAIT for 61.0 s; without it, the restart took 60.9 s.",
        "SO_REUSEADDR on the restarted server only did not help: the restart took 61.1 s.",
        "When the client closed first, the server's socket never entered TIME_WAIT and the server "
        "restarted in 0.00 s."]
    failed = dataclasses.replace(rs[0], status="failed")
    assert headline.sentences([failed]) == ["1 of 1 trials did not measure (listed below)."]


def test_the_case_table_shows_what_varies_and_the_rest_once():
    cases = [{"name": "a", "params": {"close_first": "server", "final_ack_loss": "0", "family": "ipv4"}},
             {"name": "b", "params": {"close_first": "server", "final_ack_loss": "all", "family": "ipv4"}}]
    assert pages.split_params(cases) == (["final_ack_loss"], [("close_first", "server"), ("family", "ipv4")])
    assert pages.split_params(cases[:1]) == ([], [("close_first", "server"), ("final_ack_loss", "0"),
                                                  ("family", "ipv4")])
