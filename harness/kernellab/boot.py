"""Waiting for the guest's dockerd, with a progress line from its console now and then."""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Callable
from typing import Any

from harness.errors import LabError
from harness.kernellab import qemu
from harness.kernellab.api import Api

TIMEOUT_S = 600  # TCG boots in 45-70 s alone; a loaded host (parallel tests) is slower
EVERY_S = 15


def console_tail(files: qemu.Files, n: int = 25) -> str:
    try:
        text = files.console.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(line.rstrip("\r") for line in text.splitlines()[-n:])


def _last_step(files: qemu.Files) -> str:
    # systemd's "[  OK  ] Started X." lines say how far the boot is.
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in console_tail(files, 200).splitlines() if line.strip()]
    return lines[-1].strip()[:100] if lines else "(no console output yet)"


def wait_ready(files: qemu.Files, api: Api, say: Callable[[str], None]) -> dict[str, Any]:
    """dockerd's /info once it answers; LabError (with the console's tail) if QEMU dies or time runs out."""
    t0 = time.monotonic()
    next_note = t0 + EVERY_S
    while True:
        elapsed = time.monotonic() - t0
        if qemu.pid(files) is None:
            raise LabError("booting the kernel lab", "QEMU exited", console_tail(files))
        try:
            info = api.info()
            say(f"dockerd ready after {elapsed:.0f} s")
            return info
        except (OSError, http.client.HTTPException):  # refused, reset, TLS not up yet: still booting
            pass
        if elapsed > TIMEOUT_S:
            raise LabError("booting the kernel lab", f"dockerd did not answer within {TIMEOUT_S} s",
                           console_tail(files))
        if time.monotonic() >= next_note:
            say(f"  booting, {elapsed:.0f} s: {_last_step(files)}")
            next_note += EVERY_S
        time.sleep(1)
