"""Place each region on the board and refuse layouts the device would not survive.

Pure: takes the parsed release, the board and each region's source bytes; returns
the manifest regions (padded blobs, digests, erase sectors) plus warnings. Every
error starts with `file:line:` and names the region and its address.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass

from sparkflash.boards import Area, Board, Memory
from sparkflash.errors import InputError
from sparkflash.manifest.load import where
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import digests
from sparkflash.manifest.spec import RegionSpec, ReleaseSpec

__all__ = ["Placed", "LayoutResult", "lay_out", "check_vector_table"]


@dataclass(frozen=True)
class Placed:
    """A region with its final bytes and place on the board."""

    spec: RegionSpec
    memory: Memory
    address: int
    data: bytes
    area: Area | None

    @property
    def end(self) -> int:
        return self.address + len(self.data)

    def where(self, origin: str, key: str = "") -> str:
        return (f"{where(origin, self.spec.line_of(key) if key else self.spec.line)}: region {self.spec.name!r} "
                f"at {self.memory.name} 0x{self.address:08x}")


@dataclass(frozen=True)
class LayoutResult:
    regions: tuple[Region, ...]
    blobs: dict[str, bytes]  # sha256 hex -> bytes
    warnings: tuple[str, ...]


def _memory(spec: RegionSpec, board: Board, origin: str, name: str) -> Memory:
    try:
        return board.memory(name)
    except InputError as e:
        raise InputError(f"{where(origin, spec.line_of('memory'))}: region {spec.name!r}: {e}") from None


def _place(spec: RegionSpec, board: Board, origin: str) -> tuple[Memory, int, Area | None]:
    """Memory, address and (for `area:`) the named area of one region."""
    if spec.area is not None:
        found = board.find_area(spec.area)
        if found is None:
            known = ", ".join(a.name for m in board.memories for a in m.areas)
            raise InputError(f"{where(origin, spec.line_of('area'))}: region {spec.name!r}: board {board.name} has no "
                             f"area {spec.area!r} (known: {known})")
        mem, area = found
        if spec.memory is not None and spec.memory != mem.name:
            raise InputError(f"{where(origin, spec.line_of('memory'))}: region {spec.name!r}: area {area.name!r} is in "
                             f"{mem.name} memory, not {spec.memory}")
        return mem, area.start, area
    memory = spec.memory or (board.firmware_memory if spec.kind == "firmware" else None)
    if memory is None:
        raise InputError(f"{where(origin, spec.line)}: region {spec.name!r}: missing memory "
                         f"(known: {', '.join(m.name for m in board.memories)})")
    address = board.firmware_address if spec.address is None else spec.address  # spec.py: only firmware may omit it
    return _memory(spec, board, origin, memory), address, None


def _pad(spec: RegionSpec, mem: Memory, data: bytes, origin: str) -> bytes:
    """Apply pad_to, then round up to `align` and to the memory's write unit, with `fill`.

    Sizes are checked against the memory first, so a typo such as pad_to: 0x80000000
    is an error, not a 2 GiB allocation."""
    def err(key: str, msg: str) -> InputError:
        return InputError(f"{where(origin, spec.line_of(key))}: region {spec.name!r}: {msg}")

    fill = bytes([mem.erase_value if spec.fill is None else spec.fill])
    for key, value in (("pad_to", spec.pad_to), ("align", spec.align)):
        if value is not None and value > mem.size:
            raise err(key, f"{key} {value:#x} is larger than {mem.name} flash ({mem.size:#x} bytes)")
    if len(data) > mem.size:
        raise err("source", f"out of bounds: source is {len(data)} bytes, larger than {mem.name} flash ({mem.size:#x} bytes)")
    if spec.pad_to is not None:
        if len(data) > spec.pad_to:
            raise err("pad_to", f"blob is {len(data)} bytes, larger than pad_to {spec.pad_to:#x}")
        data += fill * (spec.pad_to - len(data))
    unit = max(spec.align or 1, mem.write_align)
    return data + fill * (-len(data) % unit)


def check_vector_table(p: Placed, board: Board, origin: str) -> None:
    """A Cortex-M image starts with initial SP (in RAM, full-descending so the top is allowed)
    and a Thumb (odd) reset handler inside the application flash; anything else bricks the
    Core until DFU, so refuse it here."""
    here = p.where(origin, "source")
    if len(p.data) < 8:
        raise InputError(f"{here}: firmware is {len(p.data)} bytes, too short for a vector table")
    sp, reset = struct.unpack_from("<II", p.data)
    ram_end = board.ram_base + board.ram_size
    if not (board.ram_base < sp <= ram_end and sp % 4 == 0):
        raise InputError(f"{here}: does not start with a vector table: initial SP 0x{sp:08x} is not a word address in "
                         f"RAM 0x{board.ram_base:08x}..0x{ram_end:08x} "
                         f"(is this a .bin linked for 0x{board.firmware_address:08x}?)")
    app_end = board.firmware_address + board.firmware_max_size
    if not (reset & 1 and board.firmware_address <= reset - 1 < app_end):
        raise InputError(f"{here}: does not start with a vector table: reset handler 0x{reset:08x} is not an odd (Thumb) "
                         f"address in 0x{board.firmware_address:08x}..0x{app_end:08x}")


def _check_one(p: Placed, board: Board, origin: str) -> None:
    spec, mem = p.spec, p.memory
    here = p.where(origin, "address" if spec.address is not None else "")
    size = len(p.data)
    if size == 0:
        raise InputError(f"{p.where(origin, 'source')}: source is empty; a region needs at least one byte")
    if not mem.contains(p.address, size):
        raise InputError(f"{here}: out of bounds: 0x{p.address:08x}..0x{p.end:08x} ({size} bytes) is outside {mem.name} "
                         f"flash 0x{mem.base:08x}..0x{mem.end:08x}")
    area = p.area or _area_at(mem, p.address)
    if area is not None and p.end > area.end:
        raise InputError(f"{here}: blob of {size} bytes (0x{size:x}) is larger than its area {area.name!r} "
                         f"(0x{area.start:08x}..0x{area.end:08x}, {area.size} bytes) by {p.end - area.end} bytes")
    if p.address % mem.write_align:
        raise InputError(f"{here}: address not aligned to the {mem.name} write unit of {mem.write_align} bytes")
    if spec.align and p.address % spec.align:
        raise InputError(f"{here}: address not aligned to align {spec.align:#x}")
    prot = mem.protected_overlap(p.address, size)
    if prot is not None and not spec.allow_protected:
        raise InputError(f"{here}: writes protected area {prot.name!r} (0x{prot.start:08x}..0x{prot.end:08x}); "
                         "set allow_protected: true on the region if you really mean it")
    if spec.kind == "firmware":
        if mem.name != board.firmware_memory or p.address != board.firmware_address:
            raise InputError(f"{here}: firmware must go to {board.firmware_memory} 0x{board.firmware_address:08x}, "
                             "where the bootloader jumps")
        if size > board.firmware_max_size:
            raise InputError(f"{here}: firmware of {size} bytes is larger than the application area "
                             f"({board.firmware_max_size} bytes)")
        check_vector_table(p, board, origin)


def _area_at(mem: Memory, address: int) -> Area | None:
    """The smallest named area that holds `address` (areas may nest: system_flags in bootloader)."""
    hits = [a for a in mem.areas if a.start <= address < a.end]
    return min(hits, key=lambda a: a.size) if hits else None


MAX_WARNINGS = 20  # then one summary line: 10,000 tiny regions must not print a gigabyte


def _check_overlaps(placed: list[Placed], rel: ReleaseSpec) -> None:
    """Sweep each memory in address order (n log n): the region reaching furthest so far is the
    only one the next can overlap first. The later one in the YAML is the one blamed."""
    order = {id(p): i for i, p in enumerate(placed)}
    for mem in {p.memory.name for p in placed}:
        reach: Placed | None = None
        for p in sorted((p for p in placed if p.memory.name == mem), key=lambda p: (p.address, order[id(p)])):
            if reach is not None and p.address < reach.end:
                a, b = sorted((reach, p), key=lambda x: order[id(x)])
                raise InputError(f"{b.where(rel.origin)}..0x{b.end:08x}: overlaps region {a.spec.name!r} "
                                 f"(line {a.spec.line}, 0x{a.address:08x}..0x{a.end:08x})")
            if reach is None or p.end > reach.end:
                reach = p


def _check_pairs(placed: list[Placed], rel: ReleaseSpec) -> list[str]:
    """Overlaps are errors; erase sectors shared by regions are one warning per sector (the
    regions after the first two are counted, not listed), at most MAX_WARNINGS, then a summary."""
    _check_overlaps(placed, rel)
    by_sector: dict[tuple[str, int], list[Placed]] = {}
    for p in placed:
        for s in p.memory.sectors(p.address, len(p.data)):
            by_sector.setdefault((p.memory.name, s), []).append(p)
    order = {id(p): i for i, p in enumerate(placed)}
    shared = sorted(((k, v) for k, v in by_sector.items() if len(v) > 1), key=lambda kv: (order[id(kv[1][1])], kv[0][1]))
    warnings: list[str] = []
    for (_, sector), (a, b, *more) in shared:
        listed = ", ".join(repr(m.spec.name) for m in more[:3]) + (", …" if len(more) > 3 else "")
        others = f" and {len(more)} more regions ({listed})" if more else ""
        msg = (f"{b.where(rel.origin)}: shares the {b.memory.sector_size:#x}-byte sector at 0x{sector:08x} with "
               f"region {a.spec.name!r} (line {a.spec.line}){others}; erasing one destroys the other there. "
               "Move a region to a sector boundary")
        if rel.shared_sectors == "error":
            raise InputError(msg)
        if len(warnings) < MAX_WARNINGS:
            warnings.append(msg + " (warning; shared_sectors: error makes this fatal)")
    if len(shared) > MAX_WARNINGS:
        warnings.append(f"{rel.origin}: {len(shared) - MAX_WARNINGS} more shared sectors not shown "
                        f"({len(shared)} in all; shared_sectors: error makes them fatal)")
    return warnings


def lay_out(rel: ReleaseSpec, board: Board, sources: dict[str, bytes], *, strict_sectors: bool = False) -> LayoutResult:
    """Place, pad and check every region; `strict_sectors` turns shared-sector warnings into errors."""
    if strict_sectors and rel.shared_sectors != "error":
        rel = dataclasses.replace(rel, shared_sectors="error")
    placed: list[Placed] = []
    for spec in rel.regions:
        mem, address, area = _place(spec, board, rel.origin)
        p = Placed(spec, mem, address, _pad(spec, mem, sources[spec.name], rel.origin), area)
        _check_one(p, board, rel.origin)
        placed.append(p)
    warnings = _check_pairs(placed, rel)
    regions, blobs = [], {}
    for p in placed:
        sha, crc = digests(p.data)
        blobs[sha] = p.data
        regions.append(Region(
            name=p.spec.name, memory=p.memory.name, address=p.address, size=len(p.data), sha256=sha, crc32=crc,
            erase=tuple(p.memory.sectors(p.address, len(p.data))), kind=p.spec.kind,
            allow_protected=p.spec.allow_protected,
        ))
    return LayoutResult(tuple(regions), blobs, tuple(warnings))
