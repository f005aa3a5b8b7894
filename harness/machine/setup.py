"""`harness setup`: make this machine able to run experiments, adding only what is missing.

A Docker engine that answers is left alone. Where none answers and the environment names the
local one, the engine is installed (Debian's docker.io) if absent and started. mmdebstrap is
installed only when the base image can come neither from a registry nor from a base made before.
With --kernel-lab, the tools `harness kernel-lab up` needs as well. Run twice, the second run
changes nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import EnvironmentProblem
from harness.kernellab import kernel
from harness.lab import engines, images
from harness.machine import tools

Say = Callable[[str], None]
DOCKERD_LOG = Path("/var/log/harness-dockerd.log")
ENGINE_START_S = 60


def _reach(ref: engines.EngineRef) -> bool:
    try:
        engines.client(ref, timeout=5)
        return True
    except EnvironmentProblem:
        return False


def _start_dockerd(ref: engines.EngineRef, say: Say) -> None:
    """Start the local engine so that it outlives this process (its own session: a Ctrl+C
    here does not reach it), then wait until it answers."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        say("starting the Docker engine (systemctl start docker)")
        subprocess.run(["systemctl", "start", "docker"], check=False, capture_output=True)
        proc = None
    else:
        say(f"starting the Docker engine (dockerd, its log in {DOCKERD_LOG})")
        with open(DOCKERD_LOG, "ab") as log:
            proc = subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    deadline = time.monotonic() + ENGINE_START_S
    while time.monotonic() < deadline:
        if _reach(ref):
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = DOCKERD_LOG.read_text(errors="replace").strip().splitlines()[-3:] if DOCKERD_LOG.is_file() else []
    raise EnvironmentProblem("the Docker engine did not come up within "
                             f"{ENGINE_START_S} s" + (f"; its log ends: {' | '.join(tail)}" if tail else ""))


def run(say: Say, kernel_lab: bool = False) -> list[str]:
    """Everything a run needs, present and started; returns what it did (empty: nothing)."""
    done: list[str] = []

    def install(tool_names: list[str]) -> None:
        gone = tools.missing(tool_names)
        if gone:
            pkgs = tools.packages(gone)
            tools.apt_install(pkgs, say, update=not any(d.startswith("installed") for d in done))
            done.append(f"installed {', '.join(pkgs)}")

    ref = engines.resolve(None)
    if _reach(ref):
        say(f"the Docker engine at {ref.host} answers")
    else:
        if ref.host != engines.LOCAL:
            raise EnvironmentProblem(f"the Docker engine at {ref.host} does not answer; `harness setup` starts "
                                     "only this machine's own engine (unset DOCKER_HOST / DOCKER_CONTEXT for it)")
        install(["dockerd"])
        _start_dockerd(ref, say)
        done.append("started the Docker engine")
    base = images.base_source(engines.client(ref, timeout=30))
    if base.origin:
        say(f"base image: {base.image} ({base.origin}{'' if base.present else ', made at the first run'})")
    else:
        say("no registry answers and no local base exists: the base image is made with mmdebstrap")
        install(["mmdebstrap"])
    if kernel_lab:
        install(list(tools.KERNEL_LAB))
        if not kernel.available():  # `kernel-lab up` finds its kernel package in apt's lists
            tools.apt_update(say)
            done.append("refreshed apt's package lists")
    say("this machine is ready" + ("" if done else "; nothing to do"))
    return done
