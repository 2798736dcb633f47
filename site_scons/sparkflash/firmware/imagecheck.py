"""Refuse a linked image the bootloader could not start: a tree that loses its startup
object still links (its code is all reachable from nothing), so "it linked" proves
nothing. The Core's bootloader loads SP from the first word at the application start
and jumps to the second, so both must be sane, and the reset handler must be code.
"""

from __future__ import annotations

import struct
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from sparkflash.boards import Board
from sparkflash.errors import InputError

__all__ = ["check_image"]

#: Cortex-M3: 16 system vectors; the first two are SP and the reset handler.
_MIN_VECTORS = 16


def check_image(elf_path: str | Path, board: Board) -> None:
    """Raise InputError (what, and at which address) unless the ELF loads a vector table
    at the application start with SP inside RAM and a Thumb reset vector that points at
    code inside the application area."""
    app_lo = board.firmware_address
    app_hi = app_lo + board.firmware_max_size
    ram_lo, ram_hi = board.ram_base, board.ram_base + board.ram_size
    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        head = b""
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_filesz"] and seg["p_paddr"] == app_lo:
                head = seg.data()[: 4 * _MIN_VECTORS]
        code = [(s["sh_addr"], s["sh_addr"] + s["sh_size"]) for s in elf.iter_sections()
                if s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR and s["sh_flags"] & SH_FLAGS.SHF_ALLOC and s["sh_size"]]
    where = f"{elf_path}: no startup code"
    if len(head) < 8:
        raise InputError(f"{where}: nothing is loaded at the application start 0x{app_lo:08x} (no vector table)")
    sp, reset = struct.unpack_from("<II", head)
    if not ram_lo < sp <= ram_hi:
        raise InputError(f"{where}: initial SP 0x{sp:08x} (word 0 at 0x{app_lo:08x}) is not inside RAM "
                         f"0x{ram_lo:08x}-0x{ram_hi:08x}: the vector table is missing (is the startup .S object linked?)")
    if not reset & 1:
        raise InputError(f"{where}: reset vector 0x{reset:08x} (word 1 at 0x{app_lo + 4:08x}) lacks the Thumb bit")
    target = reset & ~1
    if not app_lo + 8 <= target < app_hi:
        raise InputError(f"{where}: reset vector 0x{reset:08x} points outside the application area "
                         f"0x{app_lo:08x}-0x{app_hi:08x}")
    if not any(lo <= target < hi for lo, hi in code):
        raise InputError(f"{where}: reset vector 0x{reset:08x} does not point into any code section")
