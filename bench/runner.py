"""How the benchmark scripts run the harness: `python -m harness ...` in a child process, from
the top of the checkout, as a user would.

The scripts are run as `python bench/NAME.py`, so this directory is first on sys.path and they
import this module as `runner`; importing it puts the checkout on sys.path too, for `harness`
and `tests` (the helpers soak.py shares with the integration tests).
"""

from __future__ import annotations

import json as jsonlib
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Ran:
    """One finished `python -m harness ...`."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    doc: Any  # its --json document, parsed; None without json=True
    wall: float  # seconds, start to exit
    start: float  # time.monotonic() as it started
    rss: int  # max RSS in KiB of every child process waited for so far (RUSAGE_CHILDREN), this one included


def _command(args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def harness(*args: str, json: bool = True, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> Ran:
    """Run `python -m harness ARGS` to its end (with --json --quiet added when json=True, and its
    document parsed); exit this script with the command and the tail of its stderr when its exit
    code is not one of `ok`."""
    cmd = _command((*args, "--json", "--quiet") if json else args)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.monotonic() - start
    rss = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    shown = " ".join(cmd[2:])
    if proc.returncode not in ok:
        sys.exit(f"{shown} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    try:
        doc = jsonlib.loads(proc.stdout) if json else None
    except jsonlib.JSONDecodeError as exc:
        sys.exit(f"{shown} (exit {proc.returncode}) printed no JSON document ({exc}):\n{proc.stderr[-3000:]}")
    return Ran(tuple(args), proc.returncode, proc.stdout, proc.stderr, doc, wall, start, rss)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python -m harness ARGS` (arguments as given) with its stdout and stderr piped as
    text and the stop signals at their defaults in it, whatever this script inherited."""
    from tests.integration.conftest import default_signals  # the tests' own: also imports pytest

    return subprocess.Popen(_command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=default_signals, env=env)


def build_images() -> None:
    """Build the lab images now (`harness images`), so that no timed run includes the build."""
    harness("images", json=False)
