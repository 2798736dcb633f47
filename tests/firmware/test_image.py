"""The example firmware image is what the bootloader expects at 0x08005000 (pyelftools)."""

from __future__ import annotations

import struct
from pathlib import Path

from elftools.elf.elffile import ELFFile
from intelhex import IntelHex

from sparkflash.boards import load_board

BOARD = load_board("spark-core")
APP = BOARD.memory("internal").area("application")


def _out(checkout: Path) -> Path:
    return checkout / "build" / "release"


def _load_image(elf_path: Path) -> tuple[int, bytes]:
    """Rebuild the flash image from the ELF's loadable segments, by load address."""
    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        parts = [(s["p_paddr"], s.data()[: s["p_filesz"]]) for s in elf.iter_segments()
                 if s["p_type"] == "PT_LOAD" and s["p_filesz"]]
    base = min(a for a, _ in parts)
    image = bytearray(max(a + len(d) for a, d in parts) - base)
    for addr, data in parts:
        image[addr - base : addr - base + len(data)] = data
    return base, bytes(image)


def test_outputs_exist(built_example: Path) -> None:
    out = _out(built_example)
    for name in ("firmware.elf", "firmware.bin", "firmware.hex", "firmware.map", "firmware.size"):
        assert (out / name).stat().st_size > 0, name


def test_vector_table_at_application_start(built_example: Path) -> None:
    with open(_out(built_example) / "firmware.elf", "rb") as f:
        elf = ELFFile(f)
        vectors = elf.get_section_by_name(".isr_vector")
        assert vectors is not None and vectors["sh_addr"] == APP.start == 0x08005000
        assert min(s["p_paddr"] for s in elf.iter_segments() if s["p_type"] == "PT_LOAD" and s["p_filesz"]) == APP.start


def test_initial_sp_in_ram_and_reset_handler_in_flash(built_example: Path) -> None:
    out = _out(built_example)
    sp, reset = struct.unpack_from("<II", (out / "firmware.bin").read_bytes())
    assert BOARD.ram_base < sp <= BOARD.ram_base + BOARD.ram_size
    assert reset & 1, "reset vector must have the Thumb bit set"
    assert APP.start <= reset & ~1 < APP.end
    with open(out / "firmware.elf", "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        (sym,) = symtab.get_symbol_by_name("Reset_Handler")
    assert sym["st_value"] | 1 == reset


def test_bin_equals_loadable_sections(built_example: Path) -> None:
    out = _out(built_example)
    base, image = _load_image(out / "firmware.elf")
    assert base == APP.start
    assert (out / "firmware.bin").read_bytes() == image


def test_hex_starts_at_application_and_matches_bin(built_example: Path) -> None:
    out = _out(built_example)
    ih = IntelHex(str(out / "firmware.hex"))
    binary = (out / "firmware.bin").read_bytes()
    assert ih.minaddr() == 0x08005000
    assert ih.tobinstr(start=ih.minaddr(), size=len(binary)) == binary


def test_size_table_printed_and_recorded(built_example: Path) -> None:
    table = (_out(built_example) / "firmware.size").read_text()
    assert "flash" in table and str(APP.size) in table and "0x08005000" in table
    assert str(BOARD.ram_size) in table
