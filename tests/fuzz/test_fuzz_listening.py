"""The serial command layer around YMODEM, both ends, fed any bytes.

Device: CommandReader turns any byte stream into requests (a bad line is a BadLine, never
an exception) and never holds more than one line of buffered garbage. Host: parse_reply /
parse_sum take any line the device (or line noise) produces and raise only
RemoteProtocolError.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparkflash.errors import RemoteProtocolError
from sparkflash.protocols import listening as L

pytestmark = pytest.mark.fuzz

words = st.sampled_from(["ID", "SUM", "SAVE", "ANY", "OK", "ERR", "i", "f", "0", "80000", "ffffffff", "1ffffffff",
                         "-1", "0x10", "\r", "\n", " ", "\0", "\xff", "É"])
lines = st.lists(words, max_size=6).map(" ".join) | st.text(max_size=100)
chunks = st.one_of(st.binary(max_size=120), lines.map(lambda s: (s + "\n").encode("utf-8", "surrogatepass")))


@given(st.lists(chunks, max_size=10))
def test_device_reader_takes_any_bytes(stream: list[bytes]) -> None:
    reader = L.CommandReader()
    total = 0
    for chunk in stream:
        reader.receive_data(chunk)
        total += len(chunk)
        for _ in range(total + 1):
            req = reader.next_request()
            if req is None:
                break
            assert isinstance(req, (L.Key, L.Identify, L.Checksum, L.SectorSums, L.RecordGet, L.RecordSet, L.Save,
                                    L.BadLine)), req
            if isinstance(req, (L.Checksum, L.SectorSums, L.Save)):
                assert 0 <= req.address <= 0xFFFFFFFF and 0 <= req.length <= 0xFFFFFFFF
        else:
            raise AssertionError("next_request() returned more requests than bytes received")
        assert len(reader._lines.buf) <= max(L.MAX_LINE + 1, len(chunk))


reply_lines = st.one_of(st.binary(max_size=120), st.tuples(st.sampled_from([b"OK ", b"ERR ", b"OK", b"ERR"]),
                                                           st.binary(max_size=100)).map(b"".join),
                        lines.map(lambda s: s.encode("utf-8", "surrogatepass")))


@given(reply_lines)
def test_host_reply_parsers_take_any_line(raw: bytes) -> None:
    # as the host reads it: bytes off the port, through LineBuffer (ASCII, bad bytes replaced)
    buf = L.LineBuffer()
    buf.receive_data(raw.replace(b"\n", b" ") + b"\r\n")
    line = buf.next_line()
    assert line is not None
    try:
        reply = L.parse_reply(line, "SUM 00080000 100")
    except RemoteProtocolError:
        return
    try:
        crc, sha = L.parse_sum(reply, "SUM 00080000 100")
    except RemoteProtocolError:
        return
    assert 0 <= crc <= 0xFFFFFFFF and len(sha) == 64


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.booleans())
def test_what_the_host_sends_the_device_parses(address: int, length: int, any_area: bool) -> None:
    reader = L.CommandReader()
    reader.receive_data(L.encode_save(address, length, any_area) + L.encode_sum(address, length) + L.encode_id())
    assert reader.next_request() == L.Save(address, length, any_area)
    assert reader.next_request() == L.Checksum(address, length)
    assert reader.next_request() == L.Identify()
