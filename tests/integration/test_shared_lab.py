"""One case's repeats in one lab, each on its own server port: every trial measured its own
connection, and nothing of one crossed into another."""

from __future__ import annotations

import io
import os
from pathlib import Path

import dpkt
import pytest

from harness import store

from .conftest import run_id, run_objects

REPEATS = 8
PORT = 7777


def _segments(path: Path) -> list[dpkt.tcp.TCP]:
    return [dpkt.ethernet.Ethernet(frame).data.data for _, frame in dpkt.pcap.Reader(io.BytesIO(path.read_bytes()))]


def test_the_repeats_share_one_lab_each_on_its_own_port(engine, shared):
    ((rc, doc, err),) = shared.values()
    assert rc == 0, err[-3000:]
    trials = doc["trials"]
    assert len(trials) == REPEATS and all(t["status"] == "ok" for t in trials)
    assert len({t["lab"] for t in trials}) == 1 and trials[0]["lab"] not in {t["trial"] for t in trials}
    assert sorted(t["server_port"] for t in trials) == list(range(PORT, PORT + REPEATS))
    # one network for them all
    networks = [e for e in store.load(Path(doc["run_dir"])).events if e.get("ev") == "network"]
    assert len({e["subnet"] for e in networks}) == 1
    assert run_objects(engine, run_id(doc)) == ([], [])


def test_each_trial_measured_its_own_connection(shared):
    ((_, doc, _),) = shared.values()
    run = Path(doc["run_dir"])
    client_ports = set()
    for t in doc["trials"]:
        segments = _segments(run / t["capture"])
        # its slice of the lab's capture: its server port's packets, and all of them
        assert segments and all(t["server_port"] in (s.sport, s.dport) for s in segments)
        syns = [s for s in segments if s.flags & dpkt.tcp.TH_SYN and not s.flags & dpkt.tcp.TH_ACK]
        assert len(syns) == 1, t["trial"]
        client_ports.add(syns[0].sport)
        # its own fault: its own drop's counters, one final ACK lost and the FIN sent again once
        assert t["final_acks_dropped"] == 1 and t["fin_retransmits"] == 1, t["trial"]
        assert 59.9 <= t["time_wait_s"] <= 66.7, t["trial"]
        # what the kernel counts for the whole namespace is no one trial's
        assert t["tw_entered"] is None and t["tw_overflow"] is None
    assert len(client_ports) == REPEATS


def test_each_trial_closed_on_its_own_recorded_phase_of_the_wheel(shared):
    ((_, doc, _),) = shared.values()
    run = store.load(Path(doc["run_dir"]))
    planned = {t.id: t.close_at for t in run.trials}
    aligned = {e["trial"]: e for e in run.events if e.get("ev") == "aligned"}
    assert set(aligned) == set(planned)
    for trial, e in aligned.items():
        period, fraction = planned[trial].split(",")
        assert period == "wheel"
        assert abs(e["phase_s"] - float(fraction) * e["period_s"]) < 1e-5
        assert abs((e["mono"] - e["late_s"]) % e["period_s"] - e["phase_s"]) < 1e-3
    assert len({round(e["phase_s"], 3) for e in aligned.values()}) == REPEATS
    assert {t["close_phase_s"] for t in doc["trials"]} == {e["phase_s"] for e in aligned.values()}


def test_every_time_wait_ended_on_a_tick_of_the_wheel_the_host_read(shared):
    # The harness read the wheel's ticks from the host's /proc/timer_list (facts.wheel_ticks); the
    # agents, on this kernel, polled around them. Each TIME_WAIT ended on one of those ticks, or a
    # jiffy or two after it (the timer's softirq runs late on a busy or an idle CPU): the last poll
    # that saw it came before that. Ticks read wrong would put that poll anywhere in the 2 s grid.
    ((_, doc, _),) = shared.values()
    run = store.load(Path(doc["run_dir"]))
    ticks = run.manifest["engines"][doc["trials"][0]["engine"]]["host_wheel_ticks"]
    if ticks is None and os.geteuid() != 0:
        pytest.skip("only root reads /proc/timer_list")
    assert ticks is not None
    period, phase = ticks["period_ns"] / 1e9, ticks["phase_ns"] / 1e9
    assert all(e["wheel_ticks"] for e in run.events if e.get("ev") == "clock" and e.get("src") == "agent")
    gone = [e for e in run.events if e.get("ev") == "tw_gone" and e.get("src") == "agent"]
    assert len(gone) == REPEATS
    for e in gone:
        before, seen = e["mono"] - e["window_ms"] / 1000, e["mono"]
        tick = phase + (seen - phase) // period * period  # the last tick before the end was seen
        assert before - tick < 0.010, e["trial"]
