"""The harness's lab images into the lab's engine: `docker save` on the host, `docker load` in the
guest, streamed through us so there is progress. The guest has no registry to pull from."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import LabError
from harness.kernellab import context, proc
from harness.kernellab.api import Api

CHUNK = 1 << 20
EVERY_S = 15


def host_env() -> dict[str, str]:
    # Without DOCKER_HOST, docker-py talks to the local socket; make the CLI do the
    # same even if the user switched its current context to another engine.
    return dict(os.environ) if "DOCKER_HOST" in os.environ else {**os.environ, "DOCKER_CONTEXT": "default"}


def guest_env(port: int, certs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"}
    return {**env, **context.env(port, certs)}


def images(refs: list[str], api: Api, port: int, certs: Path, say: Callable[[str], None]) -> list[str]:
    """Copy the refs the guest lacks; the ones copied. One tarball, so shared layers go once."""
    need = [r for r in refs if not api.has_image(r)]
    if not need:
        say(f"images: all {len(refs)} already in the lab")
        return []
    proc.need("docker")
    say(f"copying {len(need)} image(s) into the lab: {', '.join(need)} (minutes under emulation)")
    t0 = time.monotonic()
    save = subprocess.Popen(["docker", "save", *need], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=host_env())
    load = subprocess.Popen(["docker", "load", "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=guest_env(port, certs))
    sent, next_note = 0, t0 + EVERY_S
    try:
        assert save.stdout is not None and load.stdin is not None
        while chunk := save.stdout.read(CHUNK):
            load.stdin.write(chunk)
            sent += len(chunk)
            if time.monotonic() >= next_note:
                say(f"  {sent / 1e6:.0f} MB sent in {time.monotonic() - t0:.0f} s")
                next_note += EVERY_S
        load.stdin.close()
        say(f"  {sent / 1e6:.0f} MB sent; the guest's docker load is unpacking them (slow under emulation)")
    except BrokenPipeError:  # load gave up: its output says why
        save.kill()
    except BaseException:
        for p in (save, load):
            p.kill()
            p.wait()
        raise
    # Not communicate(): stdin is closed already, which it does not take on every Python.
    out = load.stdout.read().decode(errors="replace") if load.stdout else ""
    save_err = save.stderr.read().decode(errors="replace") if save.stderr else ""
    load.wait()
    save.wait()
    if load.returncode != 0:
        raise LabError("loading the images into the lab", out.strip()[-300:])
    if save.returncode != 0:
        raise LabError("saving the images on this host", save_err.strip()[-300:])
    say(f"images copied: {sent / 1e6:.0f} MB in {time.monotonic() - t0:.0f} s")
    return need
