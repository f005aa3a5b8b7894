"""Which harness this is: its version and, run from a checkout, the git commit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from harness import __version__


def git() -> dict[str, Any]:
    """The commit the harness runs from, and whether it has local changes (None when installed
    from a wheel: no checkout)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():  # an install: whatever repository surrounds it is not ours
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                                    capture_output=True, text=True, check=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def describe() -> str:
    """`harness --version`: e.g. "harness 0.2.0 (git 852bf95, local changes)"."""
    g = git()
    if not g["commit"]:
        return f"harness {__version__}"
    return f"harness {__version__} (git {g['commit'][:7]}{', local changes' if g['dirty'] else ''})"
