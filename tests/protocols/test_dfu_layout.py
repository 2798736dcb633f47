"""Interface-string grammar (dfuse.md §6) on the Core's real strings and on edge cases."""

from __future__ import annotations

import pytest

from sparkflash.errors import RemoteProtocolError
from sparkflash.protocols.dfu_layout import ERASABLE, READABLE, WRITABLE, parse_layout

CORE_ALT0 = "@Internal Flash  /0x08000000/20*001Ka,108*001Kg"
CORE_ALT1 = "@SPI Flash : SST25x/0x00000000/512*04Kg"


def test_core_internal_flash() -> None:
    lay = parse_layout(CORE_ALT0 + "\0" * 20)  # the Core's bLength 98 leaves NULs behind the text
    assert lay.name == "Internal Flash"
    boot, app = lay.segments
    assert (boot.start, boot.end, boot.page_size, boot.type_letter) == (0x08000000, 0x08005000, 1024, "a")
    assert (app.start, app.end, app.page_size, app.type_letter) == (0x08005000, 0x08020000, 1024, "g")
    assert boot.allows(READABLE) and not boot.allows(WRITABLE) and not boot.allows(ERASABLE)
    assert lay.covers(0x08005000, 0x1B000, WRITABLE) is None
    assert lay.covers(0x08004C00, 0x800, WRITABLE) == boot
    assert lay.covers(0x0801FF00, 0x200, WRITABLE) is not None  # runs past the end: a gap


def test_core_spi_flash() -> None:
    (seg,) = parse_layout(CORE_ALT1).segments
    assert (seg.start, seg.count, seg.page_size, seg.end) == (0, 512, 4096, 0x200000)
    assert parse_layout(CORE_ALT1).name == "SPI Flash : SST25x"


def test_several_groups_units_and_type_as_unit() -> None:
    lay = parse_layout("@Flash/0x08000000/4*16Kg,1*64Kg/0x1FFF7800/16*512Bf,1*4e")
    starts = [(s.start, s.page_size, s.flags) for s in lay.segments]
    assert starts == [(0x08000000, 16384, 7), (0x08010000, 65536, 7), (0x1FFF7800, 512, 6), (0x1FFF9800, 4, 5)]
    assert parse_layout("@M/0x0/2*1Mg").segments[0].end == 2 * 1024 * 1024


@pytest.mark.parametrize("bad", ["Internal/0x0/1*1Kg", "@x/0x0", "@x/zz/1*1Kg", "@x/0x0/1x1Kg", "@x/0x0/0*1Kg"])
def test_malformed(bad: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_layout(bad)
