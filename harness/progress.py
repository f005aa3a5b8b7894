"""Progress on stderr: a live board on a terminal, one plain line per event elsewhere (CI)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from harness.events import CLIENT_AGENT, Ev
from harness.plan import Trial
from harness.record import TrialResult


def _whose(e: dict[str, Any]) -> str:
    return "client's " if e.get("src") == CLIENT_AGENT else ""


# Events worth a line of their own, and how to say them.
NOTABLE = {
    Ev.LISTENING: lambda e: "server listening",
    Ev.CLOSE: lambda e: f"{e.get('side')} closed ({e.get('how')})",
    Ev.TW_APPEAR: lambda e: f"{_whose(e)}TIME_WAIT appeared (kernel timer {e.get('expires_ms', 0) / 1000:.1f} s)",
    Ev.TW_TIMER_RESTART: lambda e: f"TIME_WAIT timer restarted ({e.get('expires_ms', 0) / 1000:.1f} s)",
    Ev.TW_GONE: lambda e: f"{_whose(e)}TIME_WAIT gone",
    Ev.RECONNECT: lambda e: (f"client's connect() got through from port {e.get('lport')}" if e.get("ok")
                             else f"client reconnect refused by its kernel ({e.get('step')}: {e.get('errno')}); "
                                  "trying every poll"),
    Ev.FIXED_PORT_OK: lambda e: f"client's fixed port {e.get('lport')} usable again",
    Ev.BIND_OK: lambda e: f"bind() ok {'with' if e.get('reuseaddr') else 'without'} SO_REUSEADDR",
    Ev.PROBE_BIND_OK: lambda e: "bind() probe ok",
    Ev.RESTART_UP: lambda e: f"server restarted after {e.get('attempt')} attempt(s)",
    Ev.TIMEOUT: lambda e: "gave up waiting (max_wait_s)",
    Ev.ERROR: lambda e: f"error: {e.get('what')}",
}


class Progress:
    def __init__(self, out: TextIO = sys.stderr, live: bool | None = None, quiet: bool = False):
        self._out = out
        self._live = out.isatty() if live is None else live
        self._quiet = quiet
        self._lock = threading.Lock()
        self._rows: dict[str, str] = {}  # trial id -> state text
        self._timers: dict[str, tuple[float, float]] = {}  # trial id -> (seconds left, when seen)
        self._drawn = 0
        self._total = 0
        self._done = 0
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def begin(self, total: int) -> None:
        self._total = total
        if self._live and not self._quiet:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def end(self) -> None:
        self._stop.set()
        if self._ticker:
            self._ticker.join()
        with self._lock:
            self._erase()

    def note(self, text: str) -> None:
        self._line(text)

    def state(self, trial: Trial, state: str) -> None:
        with self._lock:
            self._rows[trial.id] = f"{trial.case}: {state}"
        if not self._live:
            self._line(f"{trial.id} {trial.case}: {state}")

    def event(self, trial: Trial, e: dict[str, Any]) -> None:
        name = e.get("ev")
        if name in (Ev.TW_APPEAR, Ev.TW_TIMER_RESTART):
            with self._lock:
                self._timers[trial.id] = (e.get("expires_ms", 0) / 1000, time.monotonic())
        elif name == Ev.TW_GONE:
            with self._lock:
                self._timers.pop(trial.id, None)
        if name == Ev.RESTART_FAIL and e.get("attempt") == 1:
            text = f"restart failed: {e.get('stderr')} (retrying until it comes up)"
        elif name in NOTABLE:
            text = NOTABLE[name](e)
        else:
            return
        with self._lock:
            self._rows[trial.id] = f"{trial.case}: {text}"
        if not self._live:
            self._line(f"{trial.id} {text}")

    def finished(self, trial: Trial, record: TrialResult) -> None:
        with self._lock:
            self._rows.pop(trial.id, None)
            self._timers.pop(trial.id, None)
            self._done += 1
            done = self._done
        status = "ok" if record.ok else f"{record.status.upper()}: {record.why}"
        self._line(f"[{done}/{self._total}] {trial.id} {trial.case}: {status}")

    # --- output ----------------------------------------------------------

    def _line(self, text: str) -> None:
        if self._quiet:
            return
        with self._lock:
            self._erase()
            print(text, file=self._out, flush=True)
            self._draw()

    def _erase(self) -> None:
        if self._drawn:
            self._out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        if not self._live or not self._rows:
            return
        now = time.monotonic()
        lines = []
        for tid, text in sorted(self._rows.items()):
            if tid in self._timers:
                left, seen = self._timers[tid]
                text += f"  [TIME_WAIT timer {max(0.0, left - (now - seen)):5.1f} s left]"
            lines.append(f"  {tid} {text}"[:160])
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()
        self._drawn = len(lines)

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                self._erase()
                self._draw()
