"""What `sparkflash flash` writes: raw binaries at an address, Intel HEX and ELF at their own addresses.

Every input is turned into pieces (address, bytes, origin) and checked before any device is
opened: inside one memory, outside protected areas, no two pieces overlapping, no ASCII text
written raw (a .hex flashed as a .bin bricks the application while every byte "verifies"),
and anything placed at the application address must start with a Cortex-M vector table.
The result is a one-off unsigned release that never enters the host's release ledger.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from sparkflash.boards import Board, Memory, load_board
from sparkflash.errors import InputError
from sparkflash.manifest.model import Manifest, Region
from sparkflash.manifest.release import Release, digests, store_blob

__all__ = [
    "ADHOC_NAME",
    "FORMATS",
    "Piece",
    "adhoc_release",
    "check_pieces",
    "detect_format",
    "load_pieces",
    "parse_targets",
    "text_problem",
    "vector_table_problem",
]

FORMATS = ("auto", "bin", "hex", "elf")
ADHOC_NAME = "sparkflash-flash"  # the release name of one-off flashes (never recorded in the ledger)
MAX_INPUT = 64 * 1024 * 1024  # no Core memory is near this; refuse before reading a huge file
_HEX_SUFFIXES = {".hex", ".ihex", ".ihx"}
_ELF_SUFFIXES = {".elf", ".axf", ".out"}
_HEX_LINE = re.compile(rb":[0-9A-Fa-f]{10,520}")
_HEX_START = re.compile(rb":[0-9A-Fa-f]{1,520}")  # the head's last line: a record, perhaps cut by the head's end
_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}
_MIN_TEXT = 16  # shorter all-printable blobs are too likely to be binary by chance


@dataclass(frozen=True)
class Piece:
    address: int
    data: bytes
    origin: str  # file (and segment) it came from, for messages and the region name

    @property
    def end(self) -> int:
        return self.address + len(self.data)


def _address(s: str) -> int | None:
    try:
        return int(s, 0)
    except ValueError:
        return None


def parse_targets(items: list[str], address: int | None) -> list[tuple[int | None, Path]]:
    """`FILE` (with --address, or HEX/ELF), or esptool-style `ADDR FILE [ADDR FILE ...]`, where a
    HEX/ELF file may also stand alone (its addresses come from the file)."""
    if address is not None:
        if len(items) != 1:
            raise InputError(f"--address takes exactly one FILE (got {len(items)} arguments); "
                             "use ADDR FILE ADDR FILE ... for several")
        return [(address, Path(items[0]))]
    out: list[tuple[int | None, Path]] = []
    i = 0
    while i < len(items):
        a = _address(items[i])
        if a is not None and not Path(items[i]).exists():
            if i + 1 >= len(items):
                raise InputError(f"address {items[i]} has no FILE after it (use ADDR FILE [ADDR FILE ...])")
            out.append((a, Path(items[i + 1])))
            i += 2
        else:
            out.append((None, Path(items[i])))
            i += 1
    return out


def detect_format(path: Path, head: bytes) -> str:
    """By suffix first, then by content (ELF magic, Intel HEX records); else raw binary."""
    suffix = path.suffix.lower()
    if suffix in _HEX_SUFFIXES:
        return "hex"
    if suffix in _ELF_SUFFIXES or head.startswith(b"\x7fELF"):
        return "elf"
    lines = [ln.strip() for ln in head.splitlines() if ln.strip()]
    if lines and all(_HEX_LINE.fullmatch(ln) for ln in lines[:-1]) and _HEX_START.fullmatch(lines[-1]):
        return "hex"
    return "bin"


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_INPUT:
            raise InputError(f"{path}: {size} bytes, larger than any flash memory ({MAX_INPUT} bytes max)")
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from e


def _hex_pieces(path: Path) -> list[Piece]:
    from intelhex import IntelHex, IntelHexError  # type: ignore[import-untyped]

    ih = IntelHex()
    try:
        ih.loadhex(str(path))
    except (IntelHexError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a valid Intel HEX file: {e}") from e
    segs = ih.segments()
    return [Piece(s, bytes(ih.tobinarray(start=s, end=e - 1)), f"{path} segment 0x{s:08x}") for s, e in segs]


def _elf_pieces(path: Path) -> list[Piece]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    out = []
    try:
        with path.open("rb") as fh:
            elf = ELFFile(fh)
            if elf["e_machine"] != "EM_ARM":
                raise InputError(f"{path}: ELF for {elf['e_machine']}, not an Arm (Cortex-M) image")
            for i, seg in enumerate(elf.iter_segments()):
                if seg["p_type"] != "PT_LOAD" or seg["p_filesz"] == 0:
                    continue
                data = seg.data()[: seg["p_filesz"]]
                # p_paddr is the load address (LMA): .data's initial values live in flash after .text
                out.append(Piece(seg["p_paddr"], data, f"{path} segment {i} (LMA 0x{seg['p_paddr']:08x})"))
    except (ELFError, struct.error, OSError) as e:
        raise InputError(f"{path}: not a valid ELF file: {e}") from e
    if not out:
        raise InputError(f"{path}: ELF has no loadable segment with file contents")
    return out


def _merge(pieces: list[Piece]) -> list[Piece]:
    """Adjacent pieces of one file become one (an ELF's .text and .data load image)."""
    out: list[Piece] = []
    for p in sorted(pieces, key=lambda p: p.address):
        if out and out[-1].end == p.address:
            out[-1] = Piece(out[-1].address, out[-1].data + p.data, out[-1].origin)
        else:
            out.append(p)
    return out


def load_pieces(path: Path, address: int | None, fmt: str = "auto") -> tuple[str, list[Piece]]:
    """(format, pieces) of one input file; a HEX/ELF given an address must start exactly there."""
    data = _read(path)
    kind = detect_format(path, data[:4096]) if fmt == "auto" else fmt
    if kind == "bin":
        if address is None:
            raise InputError(f"{path}: a raw binary needs an address (ADDR FILE, or --address); only Intel HEX "
                             "and ELF files carry their own")
        if not data:
            raise InputError(f"{path}: empty file")
        return kind, [Piece(address, data, str(path))]
    pieces = _merge(_hex_pieces(path) if kind == "hex" else _elf_pieces(path))
    if not pieces:
        raise InputError(f"{path}: Intel HEX file holds no data records")
    if address is not None and pieces[0].address != address:
        raise InputError(f"{path}: {kind.upper()} data starts at 0x{pieces[0].address:08x}, not at the given "
                         f"0x{address:08x}; addresses come from the file (drop the address)")
    return kind, pieces


def text_problem(data: bytes) -> str | None:
    """Why `data` must not be written raw: it is Intel HEX or other ASCII text."""
    if len(data) < _MIN_TEXT or not set(data) <= _TEXT_BYTES:
        return None
    if data.lstrip().startswith(b":") and detect_format(Path("x.bin"), data[:4096]) == "hex":
        return "is Intel HEX text: flashed raw, the ASCII of its records would be written (use --format hex)"
    return f"is ASCII text ({len(data)} bytes, all printable): flashed raw, the text itself would be written"


def vector_table_problem(board: Board, data: bytes) -> str | None:
    """A Cortex-M image at the application address starts with initial SP (a word address in
    RAM, full-descending so the top is allowed) and a Thumb (odd) reset handler inside the
    application; the bootloader jumps there, so anything else bricks the Core until DFU."""
    if len(data) < 8:
        return f"{len(data)} bytes, too short for a vector table"
    sp, reset = struct.unpack_from("<II", data)
    ram_end = board.ram_base + board.ram_size
    if not (board.ram_base < sp <= ram_end and sp % 4 == 0):
        return (f"initial SP 0x{sp:08x} is not a word address in RAM 0x{board.ram_base:08x}..0x{ram_end:08x} "
                f"(is this an image linked for 0x{board.firmware_address:08x}?)")
    app_end = board.firmware_address + board.firmware_max_size
    if not (reset & 1 and board.firmware_address <= reset - 1 < app_end):
        return f"reset handler 0x{reset:08x} is not an odd (Thumb) address in 0x{board.firmware_address:08x}..0x{app_end:08x}"
    return None


def _memory_of(board: Board, p: Piece) -> Memory:
    mem = next((m for m in board.memories if m.contains(p.address)), None)
    if mem is None:
        raise InputError(f"{p.origin}: address 0x{p.address:08x} is in no memory of {board.name}")
    if not mem.contains(p.address, len(p.data)):
        raise InputError(f"{p.origin}: {len(p.data)} bytes at 0x{p.address:08x} run past the end of {mem.name} "
                         f"flash (0x{mem.end:08x})")
    return mem


def check_pieces(board: Board, pieces: list[Piece], *, allow_protected: bool = False,
                 allow_text: bool = False, raw: frozenset[int] = frozenset()) -> list[Memory]:
    """Refuse, before any device is opened, what would land outside flash, on protected areas, on
    top of another piece, as text, or at the application address without a vector table.
    `raw` = indexes of pieces written as given (not decoded from HEX/ELF)."""
    mems = []
    for i, p in enumerate(pieces):
        mem = _memory_of(board, p)
        prot = mem.protected_overlap(p.address, len(p.data))
        if prot and not allow_protected:
            raise InputError(f"{p.origin}: 0x{p.address:08x}+{len(p.data)} writes the protected area {prot.name!r}; "
                             "pass --allow-protected")
        for q in pieces[:i]:
            if p.address < q.end and q.address < p.end:
                raise InputError(f"{p.origin}: 0x{p.address:08x}..0x{p.end:08x} overlaps {q.origin} "
                                 f"(0x{q.address:08x}..0x{q.end:08x})")
        if i in raw and not allow_text and (why := text_problem(p.data)):
            raise InputError(f"{p.origin} {why}; refused before any transfer (--allow-text if you mean to store text)")
        app = board.firmware_address
        if mem.name == board.firmware_memory and p.address <= app < p.end:
            why = vector_table_problem(board, p.data[app - p.address :])
            if why:
                raise InputError(f"{p.origin}: at the application address 0x{app:08x}, not a vector table: {why}; "
                                 "the bootloader would jump into it and the Core would not boot")
        mems.append(mem)
    return mems


def _region_name(p: Piece, path_name: str, several: bool) -> str:
    return f"{path_name}@0x{p.address:08x}" if several else path_name


def adhoc_release(targets: list[tuple[int | None, Path]], board_name: str, store: Path, *,
                  allow_protected: bool = False, allow_text: bool = False, fmt: str = "auto") -> Release:
    """One unsigned region per piece, with the same checks a manifest gets; nothing is written."""
    board = load_board(board_name)
    pieces: list[Piece] = []
    names: list[str] = []
    raw: set[int] = set()
    for address, path in targets:
        kind, got = load_pieces(path, address, fmt)
        if kind == "bin":
            raw.add(len(pieces))
        for p in got:
            pieces.append(p)
            names.append(_region_name(p, path.name, len(got) > 1))
    if len(set(names)) != len(names):
        names = [f"{n}@0x{p.address:08x}" for n, p in zip(names, pieces, strict=True)]
    mems = check_pieces(board, pieces, allow_protected=allow_protected, allow_text=allow_text, raw=frozenset(raw))
    regions = []
    for p, mem, name in zip(pieces, mems, names, strict=True):
        sha, crc = digests(p.data)
        store_blob(store, p.data)
        kind = "firmware" if mem.name == board.firmware_memory and p.address == board.firmware_address else "data"
        regions.append(Region(name, mem.name, p.address, len(p.data), sha, crc,
                              tuple(mem.sectors(p.address, len(p.data))), kind, allow_protected))
    m = Manifest(ADHOC_NAME, "0.0.0", board.name, tuple(regions))
    return Release(m, m.canonical(), None, store)
