"""Host tools: which are missing, the Debian packages that have them, and installing those."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

from harness.errors import EnvironmentProblem

# tool -> the Debian package that has it
TOOLS = {
    "dockerd": "docker.io",
    "docker": "docker.io",
    "mmdebstrap": "mmdebstrap",
    "qemu-system-x86_64": "qemu-system-x86",
    "mke2fs": "e2fsprogs",
    "tar": "tar",
    "openssl": "openssl",
    "apt-cache": "apt",
}
KERNEL_LAB = ("qemu-system-x86_64", "mke2fs", "openssl", "docker", "mmdebstrap")


def missing(tools: list[str] | tuple[str, ...], which: Callable[[str], str | None] | None = None) -> list[str]:
    return [t for t in tools if (which or shutil.which)(t) is None]


def packages(tools: list[str] | tuple[str, ...]) -> list[str]:
    """The Debian packages that have these tools, each once."""
    return sorted({TOOLS[t] for t in tools})


def apt_command(pkgs: list[str]) -> str:
    return f"apt-get install -y {' '.join(pkgs)}"


def _apt(args: list[str], what: str) -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"{what} needs root: run this as root, or `sudo apt-get {' '.join(args)}` first")
    if shutil.which("apt-get") is None:
        raise EnvironmentProblem(f"no apt-get here: {what} with this system's package manager")
    proc = subprocess.run(["apt-get", *args], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise EnvironmentProblem(f"`apt-get {' '.join(args)}` failed (exit {proc.returncode}): {tail}")


def apt_update(say: Callable[[str], None]) -> None:
    """Refresh apt's package lists (empty on a fresh machine)."""
    _apt(["update", "-qq"], "refreshing apt's package lists")
    say("refreshed apt's package lists (apt-get update)")


def apt_install(pkgs: list[str], say: Callable[[str], None], update: bool = True) -> None:
    """Install Debian packages (root only), after refreshing apt's lists unless just done."""
    if update:
        apt_update(say)
    _apt(["install", "-y", "-qq", *pkgs], f"installing {', '.join(pkgs)}")
    say(f"installed {', '.join(pkgs)} (apt-get)")
