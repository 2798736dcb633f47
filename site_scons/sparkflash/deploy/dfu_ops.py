"""Single DFU operations outside a release: read a range to bytes, erase a range, leave DFU mode.

The same checks as a deploy, before any transfer: the range lies inside one memory, in
layout segments that allow the operation, and outside protected areas unless allowed.
An erase is verified by reading the range back (the Core reports no errors).
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkflash.boards import Board, Memory
from sparkflash.deploy.base import ProgressFn
from sparkflash.deploy.dfu import DfuBackend, DfuUtilBackend
from sparkflash.errors import InputError, VerifyError
from sparkflash.protocols.dfu_layout import ERASABLE, READABLE, WRITABLE

__all__ = ["READ_CHUNK", "EraseReport", "erase_memory", "erase_range", "memory_for", "read_range"]

READ_CHUNK = 64 * 1024  # progress granularity of a read


def _noop(_done: int, _total: int) -> None:
    pass


def memory_for(board: Board, address: int, length: int, *, what: str, allow_protected: bool = True) -> Memory:
    if length <= 0:
        raise InputError(f"{what}: length must be positive (got {length})")
    mem = next((m for m in board.memories if m.contains(address)), None)
    if mem is None:
        raise InputError(f"{what}: address 0x{address:08x} is in no memory of {board.name}")
    if not mem.contains(address, length):
        raise InputError(f"{what}: 0x{address:08x}+{length} runs past the end of {mem.name} flash (0x{mem.end:08x})")
    prot = mem.protected_overlap(address, length)
    if prot is not None and not allow_protected:
        raise InputError(f"{what}: 0x{address:08x}+{length} touches the protected area {prot.name!r} "
                         f"(0x{prot.start:08x}..0x{prot.end:08x}); pass --allow-protected if you really mean it")
    return mem


def _check_layout(backend: DfuBackend, mem: Memory, address: int, length: int, need: int, what: str,
                  allow_protected: bool = False) -> None:
    layout = backend.select(mem.dfu_alt)
    bad = layout.covers(address, length, need)
    if bad is not None and not allow_protected:
        raise InputError(f"{what}: 0x{bad.start:08x}..0x{bad.end:08x} of alt {mem.dfu_alt} {layout.name!r} is "
                         f"segment type '{bad.type_letter}', which does not allow this")


def read_range(backend: DfuBackend, board: Board, address: int, length: int,
               progress: ProgressFn = _noop) -> bytes:
    """DFU UPLOAD of address..+length (any memory, protected areas included: reading is harmless)."""
    what = f"read 0x{address:08x}+{length}"
    mem = memory_for(board, address, length, what=what)
    _check_layout(backend, mem, address, length, READABLE, what)
    out = bytearray()
    progress(0, length)
    while len(out) < length:
        n = min(READ_CHUNK, length - len(out))
        out += backend.read(address + len(out), n)
        progress(len(out), length)
    return bytes(out)


@dataclass
class EraseReport:
    sectors: int
    already_blank: int


def erase_memory(board: Board, address: int, length: int, *, allow_protected: bool = False) -> Memory:
    """The memory an erase of address..+length acts on: whole sectors only, checked before any device is opened."""
    what = f"erase 0x{address:08x}+{length}"
    mem = memory_for(board, address, length, what=what, allow_protected=allow_protected)
    ss = mem.sector_size
    if address % ss or length % ss:
        lo, hi = address - address % ss, -(-(address + length) // ss) * ss
        raise InputError(f"{what}: not aligned to the {ss}-byte sectors of {mem.name} flash (erase works on whole "
                         f"sectors; the covering range is 0x{lo:08x} {hi - lo:#x})")
    return mem


def erase_range(backend: DfuBackend, board: Board, address: int, length: int, *, allow_protected: bool = False,
                progress: ProgressFn = _noop) -> EraseReport:
    """Erase whole sectors address..+length (must be sector-aligned), then read them back."""
    what = f"erase 0x{address:08x}+{length}"
    mem = erase_memory(board, address, length, allow_protected=allow_protected)
    ss = mem.sector_size
    _check_layout(backend, mem, address, length, ERASABLE | WRITABLE, what, allow_protected)
    if isinstance(backend, DfuUtilBackend):
        backend.force = allow_protected  # dfu-util writes a read-only layout segment only with `:force`
    blank = bytes([mem.erase_value]) * ss
    current = backend.read(address, length)
    todo = [address + off for off in range(0, length, ss) if current[off : off + ss] != blank]
    progress(0, length)
    if todo:
        # a run of 0xFF: both backends erase the touched sectors first and leave the blank chunks out
        backend.write_run(todo[0], blank * ((todo[-1] - todo[0]) // ss + 1), todo, progress)
    back = backend.read(address, length)
    if back != blank * (length // ss):
        bad = next(i for i, b in enumerate(back) if b != mem.erase_value)
        raise VerifyError(f"{what}: 0x{address + bad:08x} reads 0x{back[bad]:02x} after the erase, not "
                          f"0x{mem.erase_value:02x}; the Core reports no errors, so that sector may be protected")
    progress(length, length)
    return EraseReport(length // ss, length // ss - len(todo))
