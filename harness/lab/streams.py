"""A container's output as events: JSON lines from our programs, other lines as text."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]


class EventStream:
    """Follows one container's logs in a thread; others wait for named events."""

    def __init__(self, container: Any, source: str, sink: Callable[[Event], None]):
        self.source = source
        self._container = container
        self._sink = sink
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._follow, name=f"logs-{source}", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        pending = b""
        try:
            for chunk in self._container.logs(stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._take(line)
            if pending:
                self._take(pending)
        except Exception:  # noqa: BLE001 - a removed container ends its stream; waiters see `ended`
            pass
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _take(self, raw: bytes) -> None:
        text = raw.decode(errors="replace").rstrip("\r")
        if not text:
            return
        try:
            event = json.loads(text)
            if not isinstance(event, dict) or "ev" not in event:
                raise ValueError
        except ValueError:
            event = {"src": self.source, "ev": "output", "text": text}
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()
        self._sink(event)

    def wait_for(self, pred: Callable[[Event], bool], timeout: float) -> Event | None:
        """The first event matching pred, or None if the stream ended or time ran out."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._ended or any(pred(e) for e in self._events), timeout)
            return next((e for e in self._events if pred(e)), None) if ok else None

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._ended

    @property
    def events(self) -> list[Event]:
        with self._cond:
            return list(self._events)

    def text(self, last: int = 30) -> str:
        return "\n".join(f"{self.source}: {e.get('text', json.dumps(e))}" for e in self.events[-last:])
