"""What a device on a serial port can do, told from its answers alone (sans-I/O).

The host never sends a command a device may not know. It sends the stock key `i` first:
every Spark firmware in listening mode answers `Your core id is <24 hex>`; our device
agent adds the line `sparkflash-agent <version>` right after it. Only then are line
commands (ID, SUM, SUMS, SAVE, REC) used. A device that answers `i` with a YMODEM 'C'
(or prints the receiver's prompt) is an application waiting in `serialSaveFile`.
Also here: the host side of `SUMS` (per-4-KiB-sector CRC-32s), which skips unchanged
sectors before anything is written.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from sparkflash.errors import LocalProtocolError, RemoteProtocolError
from sparkflash.protocols import listening as L

__all__ = [
    "AGENT_TEXT",
    "SECTOR",
    "Capabilities",
    "changed_runs",
    "encode_sums",
    "parse_identity",
    "parse_sums",
    "piece_crcs",
    "sector_pieces",
]

AGENT_TEXT = "sparkflash-agent "
SECTOR = 0x1000  # SUMS cuts ranges at 4 KiB boundaries
_ID_RE = re.compile(rb"Your core id is ([0-9a-fA-F]{24})\r?\n")
_AGENT_RE = re.compile(rb"sparkflash-agent ([1-9][0-9]{0,3})\r?\n")


@dataclass(frozen=True)
class Capabilities:
    """kind: "agent" (line commands), "stock" (listening mode: `i`, `f`) or "receiver"
    (an application inside serialSaveFile, waiting for one YMODEM file)."""

    kind: str
    device_id: str | None = None
    agent_version: int | None = None


def parse_identity(buf: bytes) -> tuple[str | None, int | None, bool]:
    """(device id or None, agent version or None, receiver seen) in what followed `i`.

    The agent line counts only right after the id line; a receiver is a 'C' or the YMODEM
    prompt with no id line (stock receivers answer any stray byte with 'C')."""
    m = _ID_RE.search(buf)
    if m is None:
        return None, None, (L.FW_PROMPT.encode() in buf or b"C" in buf)
    rest = buf[m.end():]
    a = _AGENT_RE.match(rest)
    return m.group(1).decode().lower(), (int(a.group(1)) if a else None), False


def sector_pieces(address: int, length: int) -> list[tuple[int, int]]:
    """[(address, length)] of [address, address+length) cut at 4 KiB boundaries."""
    out, a, end = [], address, address + length
    while a < end:
        nxt = min(end, (a // SECTOR + 1) * SECTOR)
        out.append((a, nxt - a))
        a = nxt
    return out


def piece_crcs(address: int, data: bytes) -> list[int]:
    """CRC-32 of each 4 KiB piece of `data` placed at `address` (what SUMS returns)."""
    return [zlib.crc32(data[a - address : a - address + n]) & 0xFFFFFFFF for a, n in sector_pieces(address, len(data))]


def encode_sums(address: int, length: int) -> bytes:
    if not (0 <= address <= 0xFFFFFFFF and 0 < length <= 0xFFFFFFFF):
        raise LocalProtocolError(f"SUMS 0x{address:x}+{length}: address/length out of range")
    return f"SUMS {address:08x} {length:x}\n".encode()


def parse_sums(reply: L.Reply, expected: int, context: str) -> list[int]:
    """`OK <n> <crc> ...` -> the n CRCs; n must be the number of 4 KiB pieces asked for."""
    f = reply.fields
    try:
        n = int(f[0], 10)
        crcs = [int(x, 16) for x in f[1:]]
    except (IndexError, ValueError):
        raise RemoteProtocolError(f"{context}: malformed SUMS reply {' '.join(f)[:80]!r}") from None
    if n != expected or len(crcs) != n or any(len(x) != 8 for x in f[1:]):
        raise RemoteProtocolError(f"{context}: SUMS reply has {len(crcs)} CRCs (says {n}), expected {expected}")
    return crcs


def changed_runs(address: int, data: bytes, device: list[int]) -> list[tuple[int, int]]:
    """Contiguous (address, length) runs of the pieces whose CRC differs from the device's."""
    runs: list[tuple[int, int]] = []
    for (a, n), want, have in zip(sector_pieces(address, len(data)), piece_crcs(address, data), device, strict=False):
        if want == have:
            continue
        if runs and runs[-1][0] + runs[-1][1] == a:
            runs[-1] = (runs[-1][0], runs[-1][1] + n)
        else:
            runs.append((a, n))
    return runs
