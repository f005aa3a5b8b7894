"""A program's output: as events (JSON lines from our programs, other lines as text), or as bytes.

Waiting on either ends at once when the run stops (the stop flag wakes every such wait).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import docker.errors
import requests.exceptions
import urllib3.exceptions

from harness.errors import HarnessError
from harness.stopping import Flag

Event = dict[str, Any]


class Stopped(HarnessError):
    """The run is stopping: whatever was awaited will not be."""


def waiting(cond: threading.Condition, stopping: Flag, ready: Callable[[], bool], timeout: float | None) -> bool:
    """Holding cond (watched by stopping): until ready() (True), time runs out (False) or the run
    stops (Stopped)."""
    if not cond.wait_for(lambda: ready() or stopping.is_set(), timeout):
        return False
    if not ready():
        raise Stopped()
    return True


def _read(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A program's output until it ends; a connection that breaks (the engine, a removed container)
    ends it too."""
    try:
        yield from chunks
    except (OSError, ValueError, http.client.HTTPException, urllib3.exceptions.HTTPError,
            docker.errors.DockerException, requests.exceptions.RequestException):
        return


class EventStream:
    """One program's output as events, as its byte chunks come: fed by whoever reads them (a thread
    of its own, follow(), or the launcher of the program's side, which reads that side's every
    program's); others wait for named events."""

    def __init__(self, source: str, sink: Callable[[Event], None], stopping: Flag):
        self.source = source
        self._stopping = stopping
        self._sink = sink
        self._events: list[Event] = []
        # What each waiter waits for: an event wakes only those it may concern. A trial's thread
        # woken by each of its agent's lines (a timer sample a second, a thousand trials) kept the
        # harness's threads switching while the agents needed the CPU.
        self._wanted: list[Callable[[Event], bool]] = []
        self._pending = b""
        self._cond = threading.Condition()
        stopping.watch(self._cond)
        self._ended = False
        self._bug: BaseException | None = None  # the sink's own failure: raised to whoever waits

    @classmethod
    def follow(cls, chunks: Iterable[bytes], source: str, sink: Callable[[Event], None],
               stopping: Flag) -> EventStream:
        """A stream read from `chunks` (a container's logs, an exec's output) by a thread of its own."""
        stream = cls(source, sink, stopping)

        def read() -> None:
            for chunk in _read(chunks):
                stream.feed(chunk)
            stream.end()
        threading.Thread(target=read, name=f"logs-{source}", daemon=True).start()
        return stream

    def feed(self, chunk: bytes) -> None:
        """The program's next bytes: each line they complete becomes an event."""
        if self._bug is not None:
            return
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        try:
            for line in lines:
                self._take(line)
        except Exception as exc:  # a bug in the sink: not the end of a stream, and not to be lost
            self._bug = exc
            self.end()

    def end(self) -> None:
        """The program's output ended (its last line may lack a newline)."""
        if self._pending and self._bug is None:
            self.feed(b"\n")
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
            if any(self._concerns(wanted, event) for wanted in self._wanted):
                self._cond.notify_all()
        self._sink(event)

    @staticmethod
    def _concerns(wanted: Callable[[Event], bool], event: Event) -> bool:
        """Whether the event may end a wait: a predicate that fails wakes its waiter, to fail there
        (not here, where it would end the stream for every reader)."""
        try:
            return bool(wanted(event))
        except Exception:
            return True

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
            self._wanted.append(pred)
            try:
                if not waiting(self._cond, self._stopping, seen, timeout):
                    return None
            finally:
                self._wanted.remove(pred)
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

    def __init__(self, chunks: Iterable[bytes], source: str, stopping: Flag):
        self.source = source
        self._stopping = stopping
        self._data = bytearray()
        self._done = False
        self._cond = threading.Condition()
        stopping.watch(self._cond)
        threading.Thread(target=self._follow, args=(chunks,), name=f"bytes-{source}", daemon=True).start()

    def _follow(self, chunks: Iterable[bytes]) -> None:
        try:
            for chunk in _read(chunks):
                self._data += chunk
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def so_far(self) -> bytes:
        """What the program has written until now (a stopped run's capture)."""
        return bytes(self._data)

    def wait_end(self, timeout: float) -> bytes | None:
        """Everything the program wrote, once its stdout has closed; None if it has not in time;
        Stopped if the run stops meanwhile."""
        with self._cond:
            return bytes(self._data) if waiting(self._cond, self._stopping, lambda: self._done, timeout) else None
