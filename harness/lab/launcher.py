"""One side's launcher in a lab (images/src/lab_launcher.c): every trial's programs on that side
start through it, so a trial costs the engine no `docker exec` of its own (each about 40 ms of its
CPU: a thousand trials' would load the machine while other trials measure).

Records go both ways over the one exec's stdin and stdout: a 4-byte big-endian length, then
NUL-separated fields. A program's output comes back as chunks of its own, which an EventStream
reads as it would an exec's.
"""

from __future__ import annotations

import queue
import signal
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from harness.errors import LabError

PROGRAM = "lab-launcher"  # in the probe image (images/Dockerfile)
_END = None  # on a program's queue: its output ended


def _field(text: str) -> bytes:
    return text.encode() + b"\0"


class Launcher:
    """Starts programs in the side's container it runs in, passes them lines and signals, and hands
    each one's output to whoever reads its chunks."""

    def __init__(self, sock: Any, chunks: Iterable[bytes], name: str):
        self._sock = sock  # the exec's socket: records to the launcher's stdin
        self._name = name
        self._lock = threading.Lock()  # several trials' threads send; the queues change under it too
        self._queues: dict[str, queue.SimpleQueue[bytes | None]] = {}
        self._ended = False
        threading.Thread(target=self._demux, args=(chunks,), name=f"launcher-{name}", daemon=True).start()

    def start(self, key: str, argv: list[str], user: str, env: dict[str, str]) -> Iterator[bytes]:
        """Start argv as `user` ("" or "root": root; "UID:GID"), with env added; returns its output."""
        q: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        with self._lock:
            if self._ended:
                raise LabError(f"starting {key} in {self._name}", "its launcher has ended")
            self._queues[key] = q
        self._send(b"".join(map(_field, ["start", key, user, str(len(env)), *(f"{k}={v}" for k, v in env.items()),
                                          *argv])))
        return self._output(q)

    def write(self, key: str, data: bytes) -> None:
        self._send(_field("write") + _field(key) + data)

    def signal(self, key: str, sig: str) -> None:
        self._send(b"".join(map(_field, ["signal", key, str(int(signal.Signals[sig]))])))

    def _send(self, body: bytes) -> None:
        with self._lock:
            try:
                self._sock.sendall(struct.pack(">I", len(body)) + body)
            except OSError as exc:
                raise LabError(f"telling the launcher of {self._name}", str(exc)) from None

    def _demux(self, chunks: Iterable[bytes]) -> None:
        """Each record to its program's queue, until the launcher's output ends (it, or its
        container, went): every program's output ends with it."""
        buf = bytearray()
        try:
            for chunk in chunks:
                buf += chunk
                while len(buf) >= 4 and len(buf) >= 4 + (n := int.from_bytes(buf[:4], "big")):
                    key, kind, *data = bytes(buf[4:4 + n]).split(b"\0", 2)
                    del buf[:4 + n]
                    q = self._queues.get(key.decode(errors="replace"))
                    if q is not None:
                        q.put(data[0] if kind == b"o" and data else _END if kind == b"e" else b"")
        except OSError:
            pass  # the engine closed the stream: as if it ended
        finally:
            with self._lock:
                self._ended = True
                for q in self._queues.values():
                    q.put(_END)

    @staticmethod
    def _output(q: queue.SimpleQueue[bytes | None]) -> Iterator[bytes]:
        while (chunk := q.get()) is not _END:
            assert chunk is not None
            if chunk:
                yield chunk
