"""A container's output: as events (JSON lines from our programs, other lines as text), or as bytes.

Waiting on either ends early when the run is stopping (`stopping`), so no
trial thread outlasts a stop by more than a fraction of a second.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import docker.errors
import requests.exceptions
import urllib3.exceptions

from harness.errors import HarnessError

Event = dict[str, Any]
SLICE_S = 0.25  # how often a wait looks at `stopping`


class Stopped(HarnessError):
    """The run is stopping: whatever was awaited will not be."""


def _waiting(stopping: threading.Event, timeout: float, ready: Callable[[float], bool]) -> bool:
    """ready(slice) in slices until it is true (True), time runs out (False) or the run stops."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if ready(max(0.0, min(SLICE_S, left))):
            return True
        if stopping.is_set():
            raise Stopped()
        if left <= 0:
            return False


def _read(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A program's output until it ends; a connection that breaks (the engine, a removed container)
    ends it too."""
    try:
        yield from chunks
    except (OSError, ValueError, http.client.HTTPException, urllib3.exceptions.HTTPError,
            docker.errors.DockerException, requests.exceptions.RequestException):
        return


class EventStream:
    """Follows one program's output (byte chunks: a container's logs, or an exec's) in a thread;
    others wait for named events."""

    def __init__(self, chunks: Iterable[bytes], source: str, sink: Callable[[Event], None],
                 stopping: threading.Event):
        self.source = source
        self._stopping = stopping
        self._chunks = chunks
        self._sink = sink
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._ended = False
        self._bug: BaseException | None = None  # the sink's own failure: raised to whoever waits
        self._thread = threading.Thread(target=self._follow, name=f"logs-{source}", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        pending = b""
        try:
            for chunk in _read(self._chunks):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._take(line)
            if pending:
                self._take(pending)
        except Exception as exc:  # a bug in the sink: not the end of a stream, and not to be lost
            self._bug = exc
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
        """The first event matching pred, or None if the stream ended or time ran out; Stopped
        if the run stops meanwhile."""
        found: list[Event] = []
        checked = 0

        def seen() -> bool:  # each event looked at once: a minute-long stream has hundreds
            nonlocal checked
            found.extend(e for e in self._events[checked:] if pred(e))
            checked = len(self._events)
            return self._ended or bool(found)

        with self._cond:
            if not _waiting(self._stopping, timeout, lambda t: self._cond.wait_for(seen, t)):
                return None
            if self._bug is not None:
                raise self._bug
            return found[0] if found else None

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._ended

    @property
    def events(self) -> list[Event]:
        with self._cond:
            return list(self._events)


class ByteStream:
    """A container's stdout as bytes, read in a thread from an attach made before the start."""

    def __init__(self, chunks: Iterable[bytes], source: str, stopping: threading.Event):
        self.source = source
        self._stopping = stopping
        self._data = bytearray()
        self._done = threading.Event()
        threading.Thread(target=self._follow, args=(chunks,), name=f"bytes-{source}", daemon=True).start()

    def _follow(self, chunks: Iterable[bytes]) -> None:
        try:
            for chunk in _read(chunks):
                self._data += chunk
        finally:
            self._done.set()

    def so_far(self) -> bytes:
        """What the program has written until now (a stopped run's capture)."""
        return bytes(self._data)

    def wait_end(self, timeout: float) -> bytes | None:
        """Everything the program wrote, once its stdout has closed; None if it has not in time;
        Stopped if the run stops meanwhile."""
        return bytes(self._data) if _waiting(self._stopping, timeout, self._done.wait) else None
