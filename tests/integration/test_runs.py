"""What the kernel does, measured through the harness on real containers."""

from __future__ import annotations

import json
from pathlib import Path

from docker.utils.socket import frames_iter

from harness import store

from .conftest import CLOSE_PHASE, EXPERIMENTS, TIME_WAIT_RANGE, finish, harness, ok_trial, run_id, run_objects


def tw_end(t):
    """The earliest TIME_WAIT can have ended: the poll before the one that saw it gone."""
    return t["tw_gone_s"] - t["window_max_ms"] / 1000


def test_every_reported_time_comes_with_its_poll_window(runs):
    for t in runs["paths"][1]["trials"]:
        assert t["window_max_ms"] > 0, t["case"]


def test_every_trial_measured_and_the_run_directory_is_complete(runs):
    rc, doc, err = runs["paths"]
    assert rc == 0, err[-3000:]
    assert doc["experiment"] == "paths" and len(doc["trials"]) == 10
    run_dir = Path(doc["run_dir"])
    for name in ("experiment.yaml", "manifest.json", "events.jsonl", "trials.jsonl",
                 "results.md", "results.csv", "trials.csv"):
        assert (run_dir / name).is_file(), name
    assert len(list((run_dir / "captures").glob("t*.pcap"))) == 10
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kernel"] and manifest["engine_version"] and manifest["images"]["ids"]["server"]
    assert manifest["sysctls"]["net.ipv4.tcp_fin_timeout"]
    for t in doc["trials"]:
        assert {"case", "repeat", "params", "time_wait_s", "rebind_plain_s", "rebind_reuseaddr_s",
                "restart_s", "bind_errors", "final_acks_dropped", "fin_retransmits", "backend",
                "injection_point"} <= set(t)


def test_nothing_is_left_behind(engine, runs):
    for _, doc, _ in runs.values():
        assert run_objects(engine, run_id(doc)) == ([], [])


def test_client_closes_first_no_time_wait_on_the_server_and_an_immediate_restart(runs):
    t = ok_trial(runs, "paths", "client first")
    assert t["params"]["close_first"] == "client"
    assert t["time_wait_s"] is None
    assert t["bind_errors"] == 0
    assert t["restart_s"] < 1.0 and t["rebind_plain_s"] < 1.0


def test_server_closes_first_time_wait_blocks_bind_until_it_is_gone(runs):
    t = ok_trial(runs, "paths", "server first")
    assert TIME_WAIT_RANGE[0] < t["time_wait_s"] < TIME_WAIT_RANGE[1]
    # plain bind() failed all through TIME_WAIT and worked at its end
    assert tw_end(t) <= t["rebind_plain_s"] < t["tw_gone_s"] + 0.5
    # the restarted server printed "bind() error" until then
    assert t["bind_errors"] > 40  # once a second while TIME_WAIT cannot end (tw_agent.c, QUIET_RESTART_MS)
    assert t["restart_s"] >= tw_end(t)


def test_so_reuseaddr_on_both_sockets_binds_during_time_wait(runs):
    t = ok_trial(runs, "paths", "server first reuse")
    assert t["time_wait_s"] is not None and t["time_wait_s"] > TIME_WAIT_RANGE[0]
    assert t["rebind_reuseaddr_s"] < 1.0
    assert t["restart_s"] < 1.0 and t["bind_errors"] == 0
    assert t["rebind_plain_s"] >= tw_end(t)


def test_so_reuseaddr_only_on_the_new_socket_does_not_help_on_linux(runs):
    t = ok_trial(runs, "paths", "reuse only on restart")
    assert t["params"]["server_reuseaddr"] is False and t["params"]["restart_reuseaddr"] is True
    assert t["restart_s"] >= tw_end(t) and t["bind_errors"] > 40


def test_all_final_acks_lost_time_wait_lasts_far_longer(runs):
    lost, base = ok_trial(runs, "paths", "all acks lost"), ok_trial(runs, "paths", "server first")
    assert lost["backend"] == "nftables"
    assert "ingress" in lost["injection_point"] and "client" in lost["injection_point"]
    assert lost["time_wait_s"] > base["time_wait_s"] + 30
    assert lost["tw_timer_restarts"] >= 5
    assert lost["rebind_plain_s"] >= tw_end(lost)
    # one final ACK per FIN copy the server received, and every one dropped
    assert lost["final_acks_dropped"] == lost["fin_retransmits"] + 1
    acks = [e for e in lost["timeline"] if e["what"].startswith("final ACK")]
    assert len(acks) == lost["final_acks_dropped"] and all(e["dropped"] for e in acks)
    fins = [e for e in lost["timeline"] if e["what"].startswith("client FIN")]
    assert all(a["t"] < b["t"] for a, b in zip(fins, fins[1:]))


def test_same_seed_drops_the_same_copies(runs):
    a, b = ok_trial(runs, "paths", "seeded"), ok_trial(runs, "seeded_again", "seeded")
    assert a["params"]["final_ack_loss"] == {"p": 0.5, "seed": 7}
    assert a["dropped_copies"] == b["dropped_copies"]
    assert a["final_acks_dropped"] == len(a["dropped_copies"]) == b["final_acks_dropped"]
    labels = lambda t: [e["dropped"] for e in t["timeline"] if "dropped" in e]
    assert labels(a) == labels(b)


def test_ipv6_final_ack_lost_once(runs):
    t = ok_trial(runs, "paths", "ipv6 first ack lost")
    assert t["params"]["family"] == "ipv6"
    assert t["final_acks_dropped"] == 1 and t["fin_retransmits"] == 1
    assert t["time_wait_s"] is not None


def test_client_shutdown_still_leaves_the_server_in_time_wait(runs):
    t = ok_trial(runs, "paths", "client shutdown")
    assert t["params"]["client_close"] == "shutdown"
    assert TIME_WAIT_RANGE[0] < t["time_wait_s"] < TIME_WAIT_RANGE[1]


def test_client_first_lost_ack_keeps_the_server_in_last_ack(runs):
    t = ok_trial(runs, "paths", "client first ack lost")
    assert "server" in t["injection_point"]
    assert t["fin_retransmits"] == 1 and t["final_acks_dropped"] == 1
    # the port frees only when the retransmitted FIN is acknowledged, one RTO later
    assert t["rebind_plain_s"] > 0.15


def test_auto_says_it_chose_nftables(runs):
    _, _, err = runs["paths"]
    assert "fault backend: nftables (auto: this kernel has no netem" in err


def test_asking_for_netem_here_is_one_clear_line(engine, images):
    rc, doc, err = finish(harness("run", str(EXPERIMENTS / "netem.yaml")), timeout=120)
    assert rc == 3 and doc is None
    assert err.strip().splitlines()[-1].startswith(
        f"harness: {EXPERIMENTS / 'netem.yaml'}: fault_backend: netem is not available on this kernel")
    assert "Traceback" not in err


def test_shutdown_with_every_ack_lost_retries_past_the_orphan_limit(runs):
    short, long = ok_trial(runs, "paths", "all acks lost"), ok_trial(runs, "paths", "shutdown all acks lost")
    assert long["params"]["client_close"] == "shutdown"
    # A client that keeps its descriptor retries its FIN tcp_retries2 times, more than an
    # orphan's 8; TIME_WAIT ends at the first gap between copies longer than itself.
    assert long["fin_retransmits"] > short["fin_retransmits"]
    assert long["time_wait_s"] > short["time_wait_s"] + 30
    assert long["final_acks_dropped"] == long["fin_retransmits"] + 1
    fins = [e["t"] for e in long["timeline"] if e["what"].startswith("client FIN")]
    assert long["tw_gone_s"] - fins[-1] > 55  # the port freed while the client was still retrying


def test_close_phase_starts_the_close_on_that_phase_of_the_clock(runs):
    _, doc, _ = runs["seeded_again"]
    period, phase = map(float, CLOSE_PHASE.split(","))
    data = store.load(Path(doc["run_dir"]))
    manifest, events = data.manifest, data.events
    assert manifest["close_phase"] == [period, phase]
    (aligned,) = [e for e in events if e.get("ev") == "aligned"]
    (close,) = [e for e in events if e.get("ev") == "close" and e["src"] == "agent"]
    # The agent sleeps to the next instant of that phase on CLOCK_MONOTONIC (nice -20), then sends
    # SIGINT: the instant is exact, the wake and the close as late as the machine's load makes them.
    assert 0 <= aligned["waited_s"] < period and aligned["late_s"] >= 0
    off = (aligned["mono"] - aligned["late_s"] - phase) % period
    assert min(off, period - off) < 1e-3
    assert 0 <= close["mono"] - aligned["mono"] < 1


def test_fault_agent_reports_a_failed_install_and_still_reads_out(engine, images):
    (probe,) = [line.split()[1] for line in images.splitlines() if line.startswith("probe:")]
    # As a trial has it: started by `docker exec` in a side's container, commands on its stdin.
    c = engine.containers.run(probe, ["sleep", "300"], detach=True, network_mode="none",
                              labels={"io.harness": "1"})
    try:
        ex = engine.api.exec_create(c.id, ["fault-agent"], stdin=True, environment={
            "FAULT_INSTALL": "printf 'no\\tsuch \"device\"\\n' >&2; exit 1",
            "FAULT_READOUT": "echo '{\"nftables\": []}'"})
        sock = engine.api.exec_start(ex["Id"], socket=True)
        sock._sock.sendall(b"install\nreadout\n")
        out = b"".join(data for _, data in frames_iter(sock, tty=False)).decode().splitlines()
        assert [json.loads(line) for line in out] == [
            {"src": "fault", "ev": "ready"}, {"src": "fault", "ev": "error", "what": "install: no such device"},
            {"nftables": []}, {"src": "fault", "ev": "counted"}]
    finally:
        c.remove(force=True)


def test_the_programs_refuse_flag_values_they_do_not_know(engine, images):
    tags = dict(line.split()[:2] for line in images.splitlines() if line.split()[0] in ("probe:", "client:"))
    for image, argv in ((tags["probe:"], ["tw-agent", "-p", "7777", "-c", "sever"]),
                        (tags["probe:"], ["tw-agent", "-p", "x7777"]),
                        (tags["probe:"], ["echo-server", "70000"]),
                        (tags["client:"], ["echo-client", "-m", "closed", "h", "1", "m"])):
        c = engine.containers.run(image, argv, detach=True, labels={"io.harness": "1"}, network_mode="none")
        try:
            code = c.wait(timeout=30)["StatusCode"]
            assert code in (1, 2) and b"usage:" in c.logs(), (argv, code, c.logs())
        finally:
            c.remove(force=True)
