"""Firmware size against the board's application flash and RAM, read from the ELF.

The bootloader copies at most the application area (110,592 B at 0x08005000 on the Core)
and RAM is 20 KB, so an image that does not fit must fail the build, saying by how much,
before anything can publish or flash it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from sparkflash.boards import Board
from sparkflash.errors import InputError

__all__ = ["SizeReport", "size_report", "check_fits", "format_table"]

#: Cortex-M code/SRAM split: sections from the RAM base up to here count as RAM, also those
#: past the board's RAM end (so an overflow is measured, not ignored).
_SRAM_WINDOW = 0x20000000


@dataclass(frozen=True)
class SizeReport:
    """Berkeley sizes plus what the board limits: flash image extent and RAM extent."""

    elf: str
    text: int
    data: int
    bss: int
    flash_start: int
    flash_used: int
    flash_limit: int
    ram_used: int
    ram_limit: int

    @property
    def flash_over(self) -> int:
        return self.flash_used - self.flash_limit

    @property
    def ram_over(self) -> int:
        return self.ram_used - self.ram_limit


def size_report(elf_path: str | Path, board: Board) -> SizeReport:
    """Measure an ELF: flash = load-image extent from the app base, RAM = alloc extent."""
    app = board.memory(board.firmware_memory)
    flash_lo, flash_hi = board.firmware_address, board.firmware_address + board.firmware_max_size
    ram_lo = board.ram_base
    text = data = bss = 0
    flash_end, ram_end = flash_lo, ram_lo
    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_filesz"] and app.contains(seg["p_paddr"]):
                flash_end = max(flash_end, seg["p_paddr"] + seg["p_filesz"])
        for sec in elf.iter_sections():
            flags, size, addr = sec["sh_flags"], sec["sh_size"], sec["sh_addr"]
            if not flags & SH_FLAGS.SHF_ALLOC or not size:
                continue
            if sec["sh_type"] == "SHT_NOBITS":
                bss += size
            elif flags & SH_FLAGS.SHF_WRITE:
                data += size
            else:
                text += size
            if ram_lo <= addr < ram_lo + _SRAM_WINDOW:
                ram_end = max(ram_end, addr + size)
    return SizeReport(
        elf=str(elf_path),
        text=text,
        data=data,
        bss=bss,
        flash_start=flash_lo,
        flash_used=flash_end - flash_lo,
        flash_limit=flash_hi - flash_lo,
        ram_used=ram_end - ram_lo,
        ram_limit=board.ram_size,
    )


def format_table(r: SizeReport) -> str:
    """The table `scons` prints after a link."""
    def pct(used: int, limit: int) -> str:
        return f"{100.0 * used / limit:5.1f} %"

    return "\n".join(
        [
            f"{'text':>8} {'data':>8} {'bss':>8}   {r.elf}",
            f"{r.text:>8} {r.data:>8} {r.bss:>8}",
            f"{'region':<8} {'used':>8} {'limit':>8} {'free':>8}   use",
            f"{'flash':<8} {r.flash_used:>8} {r.flash_limit:>8} {r.flash_limit - r.flash_used:>8}   "
            f"{pct(r.flash_used, r.flash_limit)}"
            f"  (application at 0x{r.flash_start:08x})",
            f"{'ram':<8} {r.ram_used:>8} {r.ram_limit:>8} {r.ram_limit - r.ram_used:>8}   {pct(r.ram_used, r.ram_limit)}",
        ]
    )


def check_fits(r: SizeReport) -> None:
    """Raise InputError saying by how many bytes the image is over, if it is."""
    problems = []
    if r.flash_over > 0:
        problems.append(
            f"flash image {r.flash_used} B at 0x{r.flash_start:08x} exceeds the application area "
            f"({r.flash_limit} B) by {r.flash_over} bytes"
        )
    if r.ram_over > 0:
        problems.append(f"RAM use {r.ram_used} B exceeds the board's RAM ({r.ram_limit} B) by {r.ram_over} bytes")
    if problems:
        raise InputError(f"{r.elf}: " + "; ".join(problems))
