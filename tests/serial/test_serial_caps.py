"""Capability detection and the host side of SUMS, sans-I/O."""

from __future__ import annotations

import zlib

import pytest

from sparkflash.errors import RemoteProtocolError
from sparkflash.protocols import listening as L
from sparkflash.protocols import serial_caps as C

DID = "53ff6c065075535119511687"


@pytest.mark.parametrize("buf,expect", [
    (f"Your core id is {DID}\r\nsparkflash-agent 1\r\n".encode(), (DID, 1, False)),
    (f"Your core id is {DID.upper()}\r\n".encode(), (DID, None, False)),
    (f"noise\r\nYour core id is {DID}\r\nsparkflash-agent 12\r\n".encode(), (DID, 12, False)),
    (f"Your core id is {DID}\r\nhello\r\nsparkflash-agent 1\r\n".encode(), (DID, None, False)),  # not right after
    (b"C", (None, None, True)),
    (L.FW_PROMPT.encode() + b"\r\n", (None, None, True)),
    (b"", (None, None, False)),
    (b"Your core id is 53ff\r\n", (None, None, False)),  # a truncated id is no id, and no receiver
])
def test_parse_identity(buf: bytes, expect: tuple[object, ...]) -> None:
    assert C.parse_identity(buf) == expect


def test_sector_pieces_cut_at_4k() -> None:
    assert C.sector_pieces(0x80800, 0x1900) == [(0x80800, 0x800), (0x81000, 0x1000), (0x82000, 0x100)]
    assert C.sector_pieces(0x80000, 0x2000) == [(0x80000, 0x1000), (0x81000, 0x1000)]


def test_changed_runs_merge_neighbours() -> None:
    data = bytes(range(256)) * 64  # 16 KiB = 4 pieces
    crcs = C.piece_crcs(0x80000, data)
    assert crcs[0] == zlib.crc32(data[:4096])
    device = list(crcs)
    device[1] ^= 1
    device[2] ^= 1
    assert C.changed_runs(0x80000, data, device) == [(0x81000, 0x2000)]
    assert C.changed_runs(0x80000, data, crcs) == []


def test_parse_sums() -> None:
    r = L.Reply(("2", "0000abcd", "ffffffff"))
    assert C.parse_sums(r, 2, "ctx") == [0xABCD, 0xFFFFFFFF]
    for bad in [("3", "0000abcd", "ffffffff"), ("2", "0000abcd"), ("x",), ("2", "abcd", "ffffffff"), ()]:
        with pytest.raises(RemoteProtocolError, match="ctx"):
            C.parse_sums(L.Reply(bad), 2, "ctx")
    assert C.encode_sums(0x80000, 0x2800) == b"SUMS 00080000 2800\n"
