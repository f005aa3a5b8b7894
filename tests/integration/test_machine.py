"""The machine's side: `harness setup` on a machine that has everything, and `harness doctor`
against the real engine and against an address where none answers."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

from .conftest import default_signals


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300,
                          preexec_fn=default_signals, env=env)


def machine_state() -> tuple[str, str]:
    """The installed packages and the engine's process: what a set-up step could change."""
    packages = subprocess.run(["dpkg-query", "-W"], capture_output=True, text=True, check=True).stdout
    dockerd = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout
    return packages, dockerd


def test_setup_twice_changes_nothing_the_second_time(engine):
    first = harness("setup")
    assert first.returncode == 0, first.stderr
    before = machine_state()
    second = harness("setup")
    assert second.returncode == 0, second.stderr
    assert machine_state() == before
    lines = second.stderr.splitlines()
    assert lines[0].startswith("setup: the Docker engine at ") and lines[0].endswith(" answers")
    assert lines[-1] == "setup: this machine is ready; nothing to do"
    assert not [line for line in lines if "install" in line or "starting" in line]


def test_doctor_names_what_this_engine_and_kernel_have(engine, images):
    proc = harness("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("harness ")
    found = {line[9:].split(":")[0]: line for line in lines[1:]}
    version = engine.version()
    assert found["engine"].startswith("ok") and f"Docker {version['Version']}, API {version['ApiVersion']}" \
        in found["engine"]
    assert f"Linux {platform.release()}" in found["kernel"]  # the engine runs on this host
    assert found["fault backend nftables"].startswith("ok")
    netem = found["fault backend netem"]  # this machine's kernel lacks it; a kernel lab's has it
    assert netem.startswith("ok") or netem.endswith("-> harness kernel-lab up --kernel 6.1")
    assert found["base image"].startswith("ok") and found["lab images"].startswith("ok")
    assert "kernel labs" in found


def test_doctor_without_an_engine_says_what_is_missing_and_exits_3():
    proc = harness("doctor", "--engine", "tcp://127.0.0.1:9")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    missing = [line for line in proc.stdout.splitlines() if line.startswith("MISSING")]
    assert missing == ["MISSING  engine: no Docker engine answers at tcp://127.0.0.1:9 -> start it, or name "
                       "another with --engine"]
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    proc = harness("doctor", env=env)
    assert proc.returncode == 3 and "no Docker engine answers at unix:///nonexistent/docker.sock" in proc.stdout
