"""The kernel lab for real: a QEMU VM on a Debian kernel, its dockerd through a Docker context.

Uses the user's lab home (~/.cache/harness/kernel-lab, or $HARNESS_KERNEL_LAB_HOME), so a
machine that ran this before reuses the built disk image and the guest's images."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import store
from harness.kernellab import lab as kl

from .conftest import EXPERIMENTS, default_signals, finish, harness, run_id, wait_for_line

pytestmark = pytest.mark.kernellab
NAME = "harness-test"  # the lab most tests share
SCRATCH = "harness-test-interrupted"  # one that is interrupted while it boots


def harness_done(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    """A harness command run to its end (conftest's harness() starts one and returns at once)."""
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout)


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "--context", NAME, *args], capture_output=True, text=True, timeout=600)


def qemu_running(name: str) -> bool:
    """Any QEMU whose command line names this lab's folder (how else would it be ours)."""
    d = str(kl.lab_dir(name)).encode()
    for p in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes() if p.isdigit() else b""
        except OSError:
            continue
        if b"qemu-system" in cmd and d in cmd:
            return True
    return False


def context_exists(name: str) -> bool:
    return subprocess.run(["docker", "context", "inspect", name], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def lab(images):
    t0 = time.monotonic()
    up = harness_done("kernel-lab", "up", "--name", NAME)
    print(f"kernel-lab up: {time.monotonic() - t0:.0f} s\n{up.stderr}")
    assert up.returncode == 0, up.stderr[-3000:]
    yield json.loads((kl.lab_dir(NAME) / "lab.json").read_text())
    harness_done("kernel-lab", "down", NAME)  # a no-op when test_down ran


def test_the_context_reaches_dockerd_on_the_debian_kernel(lab):
    info = docker("info", "--format", "{{.KernelVersion}}|{{.OperatingSystem}}")
    assert info.returncode == 0, info.stderr
    kernel, os_name = info.stdout.strip().split("|")
    assert kernel == lab["package"].removeprefix("linux-image-") != platform.release()
    assert os_name.startswith("Debian GNU/Linux 12")


def test_netem_works_in_a_container_with_net_admin(lab, images):
    probe = next(line.split()[1] for line in images.splitlines() if line.startswith("probe:"))
    out = docker("run", "--rm", "--network", "none", "--cap-add", "NET_ADMIN", probe, "sh", "-c",
                 "ip link add hprobe0 type ifb && tc qdisc add dev hprobe0 root netem loss 100% "
                 "&& tc qdisc show dev hprobe0")
    assert out.returncode == 0, out.stderr
    assert "qdisc netem" in out.stdout and "loss 100%" in out.stdout


def test_only_the_holder_of_the_client_key_gets_in(lab):
    d = kl.lab_dir(NAME) / "tls" / "client"
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in d.iterdir()} == \
        {"ca.pem": "0o600", "cert.pem": "0o600", "key.pem": "0o600"}
    assert oct(kl.lab_dir(NAME).stat().st_mode & 0o777) == "0o700"
    # TLS with the right CA but no client certificate: dockerd (--tlsverify) answers nothing.
    ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    try:
        with socket.create_connection(("127.0.0.1", lab["port"]), timeout=30) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            answer = s.recv(100)
    except (ssl.SSLError, ConnectionError) as exc:
        answer = repr(exc).encode()
    assert not answer.startswith(b"HTTP"), answer
    # The forward listens on loopback only.
    ss = subprocess.run(["ss", "-Hltn", f"sport = :{lab['port']}"], capture_output=True, text=True).stdout
    assert [line.split()[3] for line in ss.splitlines()] == [f"127.0.0.1:{lab['port']}"]


def test_up_again_reuses_the_running_lab_and_its_images(lab):
    again = harness_done("kernel-lab", "up", "--name", NAME, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "is already up" in again.stderr and "already in the lab" in again.stderr
    assert f"DOCKER_HOST=tcp://127.0.0.1:{lab['port']}" in again.stdout


@pytest.fixture(scope="module")
def lab_runs(lab, tmp_path_factory):
    """Both runs on the lab at once (each is minutes of emulated CPU): the lost final ACK with real
    netem on the lab's kernel, and a short experiment on this host's engine and the lab's."""
    out = tmp_path_factory.mktemp("lab-runs")
    runs = {"netem": ("netem.yaml", "--engine", NAME),
            "each": ("ci_small.yaml", "--engine", "default", "--engine", NAME, "--engines", "each", "--jobs", "2"),
            "lacks": ("lacks.yaml", "--engine", "default", "--engine", NAME, "--engines", "each"),
            "isn": ("isn_handover.yaml", "--engine", "default", "--engine", NAME, "--engines", "each")}
    procs = {k: harness("run", str(EXPERIMENTS / spec), *args, "--json", "--quiet", "--results", str(out / k))
             for k, (spec, *args) in runs.items()}
    done = {}
    try:
        for k, proc in procs.items():
            rc, doc, stderr = done[k] = finish(proc, timeout=1200)
            assert doc is not None, f"{k}: exit {rc}\n{stderr[-3000:]}"
    finally:  # a timeout (or a failed run) leaves no run going on
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.communicate()
    return done


def test_the_lost_final_ack_with_real_netem_on_the_debian_kernel(lab, lab_runs):
    rc, doc, err = lab_runs["netem"]
    assert rc == 0, err[-3000:]
    (t,) = doc["trials"]
    assert t["backend"] == "netem" and "tc netem" in t["injection_point"]
    assert t["kernel"] == lab["package"].removeprefix("linux-image-")
    # Every final ACK dropped, at the client's ingress: one per FIN copy the server received,
    # each FIN copy a retransmission of the orphaned client (tcp_orphan_retries 0 means 8).
    assert t["final_acks_dropped"] == t["fin_retransmits"] + 1 and t["fin_retransmits"] >= 8
    acks = [e for e in t["timeline"] if e["what"].startswith("final ACK")]
    assert len(acks) == t["final_acks_dropped"] and all(e["dropped"] for e in acks)
    # each copy restarted TIME_WAIT: it lasted past the last FIN plus 60 s (TCP_TIMEWAIT_LEN)
    assert t["time_wait_s"] > 100


def test_each_engine_runs_every_trial_and_both_kernels_appear(lab, lab_runs):
    rc, doc, err = lab_runs["each"]
    assert rc == 0, err[-3000:]
    kernels = {t["engine"]: t["kernel"] for t in doc["trials"]}
    assert set(kernels) == {"default", NAME} and kernels[NAME] != kernels["default"] == platform.release()
    assert sorted(t["engine"] for t in doc["trials"]) == ["default"] * 3 + [NAME] * 3
    assert {q["engine"] for q in doc["engines"]} == {"default", NAME}
    table = (Path(doc["run_dir"]) / "results.md").read_text()
    assert f"client first [{kernels[NAME]}]" in table and f"client first [{kernels['default']}]" in table


def test_a_case_whose_sysctl_the_older_kernel_lacks_is_not_applicable_there(lab, lab_runs):
    # net.ipv4.tcp_tw_reuse_delay came with Linux 6.14 (ca6a6f93867a); the lab's 6.1 has not got it
    rc, doc, err = lab_runs["lacks"]
    assert rc == 0, err[-3000:]
    status = {(t["engine"], t["case"]): (t["status"], t["why"]) for t in doc["trials"]}
    assert status[("default", "plain")] == status[("default", "reuse delay")] == status[(NAME, "plain")] == ("ok", "")
    kernel = next(t["kernel"] for t in doc["trials"] if t["engine"] == NAME)
    assert status[(NAME, "reuse delay")] == (
        "not applicable", f"Linux {kernel} has no net.ipv4.tcp_tw_reuse_delay in a network namespace")
    engines = store.load(Path(doc["run_dir"])).manifest["engines"]
    assert (engines["default"]["lacks_sysctls"], engines[NAME]["lacks_sysctls"]) == ([], ["net.ipv4.tcp_tw_reuse_delay"])
    assert all(o["verdict"] == "pass" for t in doc["trials"] for o in t["expectations"])


def test_the_isn_a_time_wait_hands_to_a_listener_differs_between_the_kernels(lab, lab_runs):
    # tcp_timewait_state_process picks ISN = the old connection's next sequence number + 65537 for
    # the listener it hands the SYN to. Before Linux 6.10 that ISN was lost on the way (cleared
    # with the skb's control block before tcp_conn_request) and the listener chose a fresh one;
    # "tcp: replace TCP_SKB_CB(skb)->tcp_tw_isn with a per-cpu field" fixed it. The lab runs 6.1.
    rc, doc, err = lab_runs["isn"]
    assert rc == 0, err[-3000:]
    offset = {t["engine"]: t["same_port_isn_offset"] for t in doc["trials"]}
    assert all(t["same_port_accepted_s"] is not None for t in doc["trials"])  # handed over on both
    assert offset["default"] == 65537 and offset[NAME] not in (None, 65537), offset


def test_nothing_is_left_on_either_engine(lab, lab_runs):
    for _, doc, _ in lab_runs.values():
        for context in ("default", NAME):
            label = f"label=io.harness.run={run_id(doc)}"
            left = subprocess.run(["docker", "--context", context, "ps", "-aq", "--filter", label],
                                  capture_output=True, text=True, timeout=120)
            nets = subprocess.run(["docker", "--context", context, "network", "ls", "-q", "--filter", label],
                                  capture_output=True, text=True, timeout=120)
            assert left.returncode == 0 and left.stdout.strip() == "" and nets.stdout.strip() == "", context


def test_ctrl_c_while_booting_leaves_nothing(lab):
    # The disk image is cached by now: this boots straight away, and we interrupt the boot.
    proc = subprocess.Popen([sys.executable, "-m", "harness", "kernel-lab", "up", "--name", SCRATCH,
                             "--no-images"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)
    try:
        wait_for_line(proc, "starting QEMU", timeout=600)
        deadline = time.monotonic() + 60
        while not qemu_running(SCRATCH) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert qemu_running(SCRATCH)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, proc.stderr.read()
        assert not qemu_running(SCRATCH) and not context_exists(SCRATCH)
    finally:
        proc.kill()
        harness_done("kernel-lab", "down", SCRATCH, "--purge")


def test_down_stops_the_vm_and_removes_the_context(lab):
    assert qemu_running(NAME) and context_exists(NAME)
    down = harness_done("kernel-lab", "down", NAME, timeout=300)
    assert down.returncode == 0, down.stderr
    assert not qemu_running(NAME) and not context_exists(NAME)
    ls = harness_done("kernel-lab", "ls").stdout
    assert any(line.split()[:1] == [NAME] and " down " in line for line in ls.splitlines())
