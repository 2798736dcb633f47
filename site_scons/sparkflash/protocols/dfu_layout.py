"""DfuSe interface-string memory layouts (`@name/0xADDR/N*SSu t,...`), parsed as dfu-util does.

The Core reports one layout per alt setting; the host uses it to refuse writes into
read-only segments (the bootloader) before sending anything, and to learn page sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sparkflash.errors import RemoteProtocolError

__all__ = ["Segment", "Layout", "parse_layout", "READABLE", "ERASABLE", "WRITABLE"]

READABLE, ERASABLE, WRITABLE = 1, 2, 4
_UNITS = {"B": 1, "K": 1024, "M": 1024 * 1024}
_SEG = re.compile(r"^\s*(\d+)\s*\*\s*(\d+)\s*([BKM]?)\s*([a-g]?)\s*$")


@dataclass(frozen=True)
class Segment:
    """`count` pages of `page_size` bytes from `start`, with the type letter's flag bits."""

    start: int
    count: int
    page_size: int
    flags: int

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.start + self.count * self.page_size

    @property
    def type_letter(self) -> str:
        return chr(ord("a") - 1 + self.flags) if self.flags else "?"

    def allows(self, flags: int) -> bool:
        """True if every bit of `flags` (READABLE | ERASABLE | WRITABLE) is set."""
        return self.flags & flags == flags


@dataclass(frozen=True)
class Layout:
    name: str
    segments: tuple[Segment, ...]

    def segment_at(self, address: int) -> Segment | None:
        return next((s for s in self.segments if s.start <= address < s.end), None)

    def covers(self, address: int, size: int, flag: int) -> Segment | None:
        """The first segment in [address, address+size) lacking a bit of `flag`, or None if all allow it.

        Gaps between segments count as lacking every flag (returned as a zero-flag Segment)."""
        a, end = address, address + max(size, 1)
        while a < end:
            s = self.segment_at(a)
            if s is None:
                return Segment(a, 1, 1, 0)
            if not s.allows(flag):
                return s
            a = s.end
        return None


def parse_layout(text: str) -> Layout:
    """Parse one interface string; text after the first NUL is ignored (the Core pads to 98 bytes)."""
    s = text.split("\0", 1)[0]
    if not s.startswith("@"):
        raise RemoteProtocolError(f"DfuSe interface string {s!r} does not start with '@'")
    parts = s[1:].split("/")
    if len(parts) < 3 or len(parts) % 2 == 0:
        raise RemoteProtocolError(f"DfuSe interface string {s!r}: expected @name/0xADDR/segments[/0xADDR/segments...]")
    segments: list[Segment] = []
    for addr_s, segs_s in zip(parts[1::2], parts[2::2], strict=False):
        try:
            addr = int(addr_s.strip(), 16)
        except ValueError:
            raise RemoteProtocolError(f"DfuSe interface string {s!r}: bad address {addr_s!r}") from None
        for seg in segs_s.split(","):
            m = _SEG.match(seg)
            if m is None:
                raise RemoteProtocolError(f"DfuSe interface string {s!r}: bad segment {seg!r} (want N*SIZE[BKM]TYPE)")
            count, size, unit, typ = int(m[1]), int(m[2]), m[3], m[4]
            if count == 0 or size == 0:
                raise RemoteProtocolError(f"DfuSe interface string {s!r}: empty segment {seg!r}")
            flags = (ord(typ) - ord("a") + 1) & 7 if typ else 0
            segments.append(Segment(addr, count, size * _UNITS[unit or "B"], flags))
            addr += count * size * _UNITS[unit or "B"]
    return Layout(parts[0].strip(), tuple(segments))
