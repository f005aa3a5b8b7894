"""Where the lab keeps its files: one per-user folder, owner-only, that CI can keep between runs."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """$HARNESS_KERNEL_LAB_HOME, else $XDG_CACHE_HOME/harness/kernel-lab (~/.cache/...)."""
    given = os.environ.get("HARNESS_KERNEL_LAB_HOME")
    d = Path(given) if given else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness" / "kernel-lab"
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)  # keys live below: only the user who starts a lab may read them
    return d
