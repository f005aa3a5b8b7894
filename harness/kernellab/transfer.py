"""The harness's lab images into the lab's engine: `docker save` on the host, `docker load` in the
guest, streamed through us so there is progress. The guest has no registry to pull from."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from harness.kernellab import context, proc
from harness.kernellab.api import Api
from harness.lab import images as lab_images


def host_env() -> dict[str, str]:
    # Without DOCKER_HOST, docker-py talks to the local socket; make the CLI do the
    # same even if the user switched its current context to another engine.
    return dict(os.environ) if "DOCKER_HOST" in os.environ else {**os.environ, "DOCKER_CONTEXT": "default"}


def guest_env(port: int, certs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"}
    return {**env, **context.env(port, certs)}


def images(refs: list[str], api: Api, port: int, certs: Path, say: Callable[[str], None]) -> list[str]:
    """Copy the refs the guest lacks; the ones copied."""
    need = [r for r in refs if not api.has_image(r)]
    if not need:
        say(f"images: all {len(refs)} already in the lab")
        return []
    proc.need("docker")
    lab_images.copy(need, host_env(), guest_env(port, certs), say)
    return need
