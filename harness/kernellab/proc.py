"""The host tools the lab runs: which are missing, and running one so that it dies with us."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from harness.errors import EnvironmentProblem, LabError
from harness.machine.tools import apt_command, missing, packages


def need(*tools: str) -> None:
    gone = missing(tools)
    if gone:
        raise EnvironmentProblem(f"the kernel lab needs {', '.join(gone)}, not installed here "
                                 f"({apt_command(packages(gone))}, or harness setup --kernel-lab)")


def run(cmd: list[str], doing: str, on_line: Callable[[str], None] | None = None) -> str:
    """Run cmd to the end, passing each output line to on_line; its output, or LabError.

    A failure or Ctrl+C here stops the command too: a child started from a
    non-interactive shell may ignore SIGINT and would outlive us."""
    lines: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line:
                on_line(line.rstrip("\n"))
        proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if proc.returncode != 0:
        raise LabError(doing, f"{cmd[0]} exited with {proc.returncode}", "".join(lines[-15:]).rstrip())
    return "".join(lines)
