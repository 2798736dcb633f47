"""Listening-mode command parsing and replies (docs/serial-protocol.md), both ends, in memory."""

from __future__ import annotations

import pytest

from sparkflash.boards import load_board
from sparkflash.errors import RemoteProtocolError
from sparkflash.protocols import listening as L

EXT = load_board("spark-core").memory("external")


def requests(data: bytes) -> list[L.Request]:
    r = L.CommandReader()
    r.receive_data(data)
    out = []
    while (req := r.next_request()) is not None:
        out.append(req)
    return out


def test_stock_keys_act_without_newline_and_lines_wait_for_lf() -> None:
    assert requests(b"i") == [L.Key("i")]
    assert requests(b"f") == [L.Key("f")]
    assert requests(b"SUM 80000 10") == []  # no LF yet
    assert requests(b"ID\r\nSUM 08005000 7538\nSAVE 00080000 10000 ANY\n") == [
        L.Identify(), L.Checksum(0x08005000, 0x7538), L.Save(0x80000, 0x10000, True)]


def test_host_encoders_round_trip_through_the_device_parser() -> None:
    assert requests(L.encode_id() + L.encode_sum(0x08005000, 30008) + L.encode_save(0x100000, 4096, False)) == [
        L.Identify(), L.Checksum(0x08005000, 30008), L.Save(0x100000, 4096, False)]


@pytest.mark.parametrize("line", [b"SUM 1\n", b"SUM 0x10 20\n", b"SUM 123456789 1\n", b"SAVE 1 2 MAYBE\n", b"NOPE\n"])
def test_bad_lines_get_err_1(line: bytes) -> None:
    (req,) = requests(line)
    assert isinstance(req, L.BadLine) and req.code == L.ERR_SYNTAX


def test_overlong_line_is_refused_not_buffered_forever() -> None:
    # As the C agent does: an over-long line is skipped to its LF (nothing kept meanwhile)
    # and answered once.
    reader = L.CommandReader()
    reader.receive_data(b"S" * 1000)
    assert reader.next_request() is None and len(reader._line) <= L.MAX_LINE + 1
    reader.receive_data(b"S" * 1000 + b"\nID\n")
    req = reader.next_request()
    assert isinstance(req, L.BadLine) and f"longer than {L.MAX_LINE}" in req.text
    assert reader.next_request() == L.Identify() and reader.next_request() is None


def test_reply_parsing() -> None:
    assert L.parse_reply("OK 1c291ca3 " + "ab" * 32, "SUM").fields == ("1c291ca3", "ab" * 32)
    with pytest.raises(L.Refused) as e:
        L.parse_reply("ERR 2 outside", "SAVE 0x00001000")
    assert e.value.code == L.ERR_RANGE and "SAVE 0x00001000: device refused: 2 outside" in str(e.value)
    with pytest.raises(RemoteProtocolError, match="unexpected reply"):
        L.parse_reply("Your core id is x", "ID")
    with pytest.raises(RemoteProtocolError, match="malformed SUM"):
        L.parse_sum(L.Reply(("1", "2")), "SUM")


def test_save_range_rule() -> None:
    assert L.save_range_error(EXT, 0x60000, 0x20000, False) is None  # the whole OTA slot
    assert L.save_range_error(EXT, 0x60000, 0x20001, False) is not None
    assert L.save_range_error(EXT, 0x61000, 0x100, False) is not None  # OTA only from its start
    assert L.save_range_error(EXT, 0x80000, 0x180000, False) is None  # the whole user area
    assert L.save_range_error(EXT, 0x1FF000, 0x1001, False) is not None
    assert L.save_range_error(EXT, 0x20000, 0x100, False) is not None
    assert L.save_range_error(EXT, 0x20000, 0x100, True) is None  # ANY: the host vouches
    assert L.save_range_error(EXT, 0x1FF000, 0x1001, True) is not None  # never past the chip
    assert L.save_range_error(EXT, 0x80000, 0, False) == "empty file"
