"""The device's release record: what the last verified deploy put on the device.

One reserved 4 KiB external-flash sector (board area `release_record`) holds an append log
of 128-byte slots; the last valid slot is the record. A torn write leaves a slot that fails
its CRC and the previous one stands. The same bytes are read by the device agent (REC), by
a DFU UPLOAD of the sector, and written by the virtual Core. Format: docs/device-agent.md §5.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from sparkflash.errors import InputError

__all__ = ["MAGIC", "NAME_RE", "SLOT", "Record", "check_fields", "decode_slot", "encode_slot", "free_slot", "latest"]

SLOT = 128
BODY = 104
MAGIC = b"SFR1"
NAME_RE = re.compile(r"[A-Za-z0-9._+-]{1,32}")
SHA_RE = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Record:
    name: str
    version: str
    sha256: str  # 64 lower-case hex digits


def check_fields(name: str, version: str, sha256: str) -> Record:
    """A record from untrusted text (a REC SET line), fully matched; InputError if not."""
    if not NAME_RE.fullmatch(name) or not NAME_RE.fullmatch(version):
        raise InputError(f"release record: name {name[:40]!r} / version {version[:40]!r}: 1-32 of A-Z a-z 0-9 . _ + -")
    if not SHA_RE.fullmatch(sha256):
        raise InputError(f"release record: sha256 {sha256[:70]!r} is not 64 hex digits")
    return Record(name, version, sha256.lower())


def encode_slot(rec: Record) -> bytes:
    n, v = rec.name.encode(), rec.version.encode()
    body = MAGIC + bytes([len(n), len(v), 0, 0]) + n.ljust(32, b"\0") + v.ljust(32, b"\0") + bytes.fromhex(rec.sha256)
    assert len(body) == BODY
    return (body + struct.pack("<I", zlib.crc32(body))).ljust(SLOT, b"\xff")


def decode_slot(slot: bytes) -> Record | None:
    """The record in one slot, or None if the slot is blank, torn or malformed."""
    if len(slot) != SLOT or slot[:4] != MAGIC:
        return None
    body, (crc,) = slot[:BODY], struct.unpack("<I", slot[BODY : BODY + 4])
    if zlib.crc32(body) != crc:
        return None
    nl, vl = slot[4], slot[5]
    name, version = slot[8 : 8 + nl].decode("ascii", "replace"), slot[40 : 40 + vl].decode("ascii", "replace")
    if not NAME_RE.fullmatch(name) or not NAME_RE.fullmatch(version):
        return None
    return Record(name, version, slot[72:104].hex())


def latest(sector: bytes) -> Record | None:
    """The last valid slot of the sector (every slot is looked at: a torn one may come first)."""
    found = None
    for i in range(0, len(sector) - SLOT + 1, SLOT):
        found = decode_slot(sector[i : i + SLOT]) or found
    return found


def free_slot(sector: bytes) -> int | None:
    """Offset of the first all-0xFF slot, or None when the log is full (erase, then slot 0)."""
    for i in range(0, len(sector) - SLOT + 1, SLOT):
        if sector[i : i + SLOT] == b"\xff" * SLOT:
            return i
    return None
