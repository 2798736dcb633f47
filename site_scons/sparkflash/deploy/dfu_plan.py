"""Which sectors a DFU write must touch: pure arithmetic over read-back bytes.

The Core cannot report errors or checksums, so the host reads the touched sectors
first (UPLOAD is cheap: no poll timeouts), rewrites only those whose bytes differ,
keeps the bytes of partially covered sectors that lie outside the region, and
erases only sectors that are not already blank.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SectorPlan", "plan_write", "chunks"]


@dataclass(frozen=True)
class SectorPlan:
    start: int  # first byte of the first touched sector
    desired: bytes  # the whole span as it must read afterwards
    sector_size: int
    changed: tuple[int, ...]  # sector start addresses to rewrite
    skipped: int  # touched sectors whose content already matched
    blank: frozenset[int]  # sector starts that are already erased (no Erase needed)

    @property
    def end(self) -> int:
        return self.start + len(self.desired)

    def runs(self) -> list[tuple[int, int]]:
        """Contiguous [start, end) runs of changed sectors: the pointer is set once per run."""
        out: list[tuple[int, int]] = []
        for s in self.changed:
            e = min(s + self.sector_size, self.end)
            if out and out[-1][1] == s:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
        return out

    def bytes_of(self, start: int, end: int) -> bytes:
        return self.desired[start - self.start : end - self.start]


def plan_write(start: int, sector_size: int, current: bytes, address: int, data: bytes, *, force: bool = False,
               erased: int = 0xFF) -> SectorPlan:
    """`current` = the span [start, start+len(current)) as read back (0xFF where not read)."""
    desired = bytearray(current)
    desired[address - start : address - start + len(data)] = data
    changed, blank, skipped = [], set(), 0
    for off in range(0, len(current), sector_size):
        cur, want = current[off : off + sector_size], desired[off : off + sector_size]
        if cur == bytes([erased]) * len(cur) and not force:
            blank.add(start + off)
        if cur == want and not force:
            skipped += 1
        else:
            changed.append(start + off)
    return SectorPlan(start, bytes(desired), sector_size, tuple(changed), skipped, frozenset(blank))


def chunks(start: int, data: bytes, size: int, *, skip_blank: bool, erased: int = 0xFF) -> list[tuple[int, int, bytes]]:
    """(wBlockNum, address, bytes) for DNLOAD blocks 2, 3, 4...; all-blank chunks after an erase
    need not be sent (the block number, not the order, places the data)."""
    out = []
    for i, off in enumerate(range(0, len(data), size)):
        c = data[off : off + size]
        if skip_blank and c == bytes([erased]) * len(c):
            continue
        out.append((2 + i, start + off, c))
    return out
