"""The harness's lab images into the lab's engine: `docker save` on the host, `docker load` in the
guest, streamed through us so there is progress. The guest has no registry to pull from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.kernellab import context, proc
from harness.kernellab.api import Api
from harness.lab import engines
from harness.lab import images as lab_images


def images(refs: list[str], api: Api, port: int, certs: Path, say: Callable[[str], None]) -> list[str]:
    """Copy the refs the guest lacks; the ones copied."""
    need = [r for r in refs if not api.has_image(r)]
    if not need:
        say(f"images: all {len(refs)} already in the lab")
        return []
    proc.need("docker")
    # from the engine the images were built on (the environment's, as `harness images` finds it)
    host = engines.resolve(None).env()
    lab_images.copy(need, host, engines.EngineRef("kernel-lab", context.host(port), certs).env(), say)
    return need
