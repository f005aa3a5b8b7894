"""One side's launcher in a lab (images/src/lab_launcher.c): every trial's programs on that side
start through it, so a trial costs the engine no `docker exec` of its own (each about 40 ms of its
CPU: a thousand trials' would load the machine while other trials measure).

Records go both ways over the one exec's stdin and stdout: a 4-byte big-endian length, then
NUL-separated fields. A program's output comes back as chunks of its own, which the launcher's
reading thread hands to that program's EventStream: one thread a side, however many programs
(a thread a program, a thousand trials' would spend the harness's CPU on switching between them).
"""

from __future__ import annotations

import signal
import struct
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from harness.errors import LabError

PROGRAM = "lab-launcher"  # in the probe image (images/Dockerfile)


class Output(Protocol):
    """Where a program's output goes (an EventStream)."""

    def feed(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...


def _field(text: str) -> bytes:
    return text.encode() + b"\0"


class Launcher:
    """Starts programs in the side's container it runs in, passes them lines and signals, and hands
    each one's output to whoever reads its chunks."""

    def __init__(self, sock: Any, chunks: Iterable[bytes], name: str):
        self._sock = sock  # the exec's socket: records to the launcher's stdin
        self._name = name
        self._lock = threading.Lock()  # several trials' threads send; the outputs change under it too
        self._outputs: dict[str, Output] = {}
        self._ended = False
        threading.Thread(target=self._demux, args=(chunks,), name=f"launcher-{name}", daemon=True).start()

    def start(self, key: str, argv: list[str], user: str, env: dict[str, str], out: Output) -> None:
        """Start argv as `user` ("" or "root": root; "UID:GID"), with env added; its output to `out`."""
        with self._lock:
            if self._ended:
                raise LabError(f"starting {key} in {self._name}", "its launcher has ended")
            self._outputs[key] = out
        self._send(b"".join(map(_field, ["start", key, user, str(len(env)), *(f"{k}={v}" for k, v in env.items()),
                                          *argv])))

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
        """Each record to its program's output, until the launcher's output ends (it, or its
        container, went): every program's output ends with it."""
        buf = bytearray()
        try:
            for chunk in chunks:
                buf += chunk
                while len(buf) >= 4 and len(buf) >= 4 + (n := int.from_bytes(buf[:4], "big")):
                    key, kind, *data = bytes(buf[4:4 + n]).split(b"\0", 2)
                    del buf[:4 + n]
                    out = self._outputs.get(key.decode(errors="replace"))
                    if out is not None and kind == b"o" and data:
                        out.feed(data[0])
                    elif out is not None and kind == b"e":
                        out.end()
        except OSError:
            pass  # the engine closed the stream: as if it ended
        finally:
            with self._lock:
                self._ended = True
                outputs = list(self._outputs.values())
            for out in outputs:
                out.end()
