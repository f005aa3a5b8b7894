"""Which Debian kernel package a request names. Resolution is pure; apt is asked at the edge."""

from __future__ import annotations

import re
import subprocess

from harness.errors import EnvironmentProblem

PREFIX = "linux-image-"
FLAVOURS = ("cloud-amd64", "amd64")
# A concrete, installable kernel (not a meta-package like linux-image-6.12-amd64):
# 6.1.0-56 (bookworm's ABI numbering) or 6.12.117+deb12 (backports' style).
_CONCRETE = re.compile(r"^linux-image-(\d+\.\d+\.\d+(?:-\d+|\+[a-z0-9]+))-(" + "|".join(FLAVOURS) + r")$")


def release(package: str) -> str:
    """linux-image-6.1.0-56-cloud-amd64 -> 6.1.0-56-cloud-amd64, the guest's `uname -r`."""
    return package.removeprefix(PREFIX)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def resolve(request: str, available: list[str], flavour: str = FLAVOURS[0]) -> str:
    """A package name as is, or a version prefix (6.1, 6.12, 6.1.0-56) -> the newest matching package."""
    if request.startswith(PREFIX):
        if request in available:
            return request
        raise EnvironmentProblem(f"kernel package {request} is not known to apt here "
                                 f"(try `apt-get update`; `apt-cache search --names-only ^{PREFIX}` lists them)")
    found = []
    for name in available:
        m = _CONCRETE.match(name)
        # 6.1 must not match 6.12: the request ends where the version does or at a separator.
        if m and m.group(2) == flavour and re.match(re.escape(request) + r"($|[.+-])", m.group(1)):
            found.append((_version_key(m.group(1)), name))
    if not found:
        raise EnvironmentProblem(f"no Debian kernel package for {request!r} ({flavour}) is known to apt here "
                                 f"(try `apt-get update`, or name a package: --kernel {PREFIX}...)")
    return max(found)[1]


def available() -> list[str]:
    """Kernel image packages apt can install (from the host's apt lists, as mmdebstrap uses them)."""
    proc = subprocess.run(["apt-cache", "search", "--names-only", f"^{PREFIX}"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise EnvironmentProblem(f"apt-cache failed: {proc.stderr.strip()[:200]}")
    return [line.split(" ", 1)[0] for line in proc.stdout.splitlines() if line.strip()]
