"""An exec'd program's output stream: Docker's 8-byte frame headers, read without polling the socket."""

import io
import struct

from harness.lab.topology import _frames


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">B3xL", stream, len(payload)) + payload


def test_payloads_of_both_streams_in_order():
    wire = frame(1, b'{"ev":"ready"}\n') + frame(2, b"warning\n") + frame(1, b"")
    assert list(_frames(io.BytesIO(wire))) == [b'{"ev":"ready"}\n', b"warning\n", b""]


def test_a_frame_larger_than_one_read_comes_whole():
    big = b"x" * 100_000
    assert list(_frames(io.BufferedReader(io.BytesIO(frame(1, big)), buffer_size=4096))) == [big]


def test_the_stream_ends_at_a_cut_header_and_is_closed():
    stream = io.BytesIO(frame(1, b"one\n") + b"\x01\x00\x00")
    assert list(_frames(stream)) == [b"one\n"]
    assert stream.closed


def test_the_launchers_stream_is_its_stdout_alone():
    wire = frame(2, b"lab-launcher: not found\n") + frame(1, b"\x00\x00\x00\x02ab")
    assert list(_frames(io.BytesIO(wire), stdout_only=True)) == [b"\x00\x00\x00\x02ab"]
