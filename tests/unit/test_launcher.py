"""The launcher's records, as the harness reads and writes them (the launcher itself runs in every
lab of the integration tests)."""

import signal
import struct
import threading

import pytest

from harness.errors import LabError
from harness.lab.launcher import Launcher


def record(*fields: bytes) -> bytes:
    body = b"\0".join(fields)
    return struct.pack(">I", len(body)) + body


class Output:
    """What a program's EventStream would be handed."""

    def __init__(self) -> None:
        self.data = b""
        self.ended = threading.Event()

    def feed(self, chunk: bytes) -> None:
        assert not self.ended.is_set()
        self.data += chunk

    def end(self) -> None:
        self.ended.set()


class Wire:
    """The launcher's side: what the harness sent, and a stream of records to hand it."""

    def __init__(self) -> None:
        self.sent = b""
        self.chunks: list[bytes] = []
        self.go = threading.Event()

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def stream(self):
        self.go.wait(5)
        yield from self.chunks


def test_each_programs_output_reaches_its_own_reader_split_anywhere():
    wire = Wire()
    launcher = Launcher(wire, wire.stream(), "lab")
    a, b = Output(), Output()
    launcher.start("t000-agent", ["tw-agent", "-p", "7777"], "", {}, a)
    launcher.start("t001-agent", ["tw-agent", "-p", "7778"], "65534:65534", {"X": "1"}, b)
    stream = (record(b"t000-agent", b"o", b'{"ev":"listening"}\n') + record(b"t001-agent", b"o", b"one\0two\n")
              + record(b"t000-agent", b"e") + record(b"", b"error", b"unknown command") + record(b"t001-agent", b"e"))
    wire.chunks = [stream[i:i + 5] for i in range(0, len(stream), 5)]  # records cut across chunks
    wire.go.set()
    assert a.ended.wait(5) and b.ended.wait(5)
    assert a.data == b'{"ev":"listening"}\n'
    assert b.data == b"one\0two\n"


def test_what_the_harness_sends_is_one_record_a_command():
    wire = Wire()
    launcher = Launcher(wire, wire.stream(), "lab")
    launcher.start("t000-client", ["echo-client", "--", "10.0.0.2", ""], "65534:65534", {"A": "x=y"}, Output())
    launcher.write("t000-client", b"connect\n")
    launcher.signal("t000-client", "SIGUSR1")
    records, sent = [], wire.sent
    while sent:
        n = struct.unpack(">I", sent[:4])[0]
        records.append(sent[4:4 + n])
        sent = sent[4 + n:]
    # every field ends with a NUL, so that an empty last word is a word
    assert records[0] == b"start\0t000-client\x0065534:65534\x001\0A=x=y\0echo-client\0--\x0010.0.0.2\0\0"
    assert records[1] == b"write\0t000-client\0connect\n"
    assert records[2] == f"signal\0t000-client\0{int(signal.SIGUSR1)}\0".encode()
    wire.go.set()


def test_when_the_launcher_ends_every_output_ends_and_nothing_more_starts():
    wire = Wire()
    launcher = Launcher(wire, wire.stream(), "lab")
    a = Output()
    launcher.start("t000-agent", ["tw-agent"], "", {}, a)
    wire.chunks = [record(b"t000-agent", b"o", b"half")]
    wire.go.set()
    assert a.ended.wait(5) and a.data == b"half"
    with pytest.raises(LabError, match="its launcher has ended"):
        launcher.start("t001-agent", ["tw-agent"], "", {}, Output())
