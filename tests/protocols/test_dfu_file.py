"""DFU suffix and DfuSe container: golden CRC, exact layout, round trips, corruption caught."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkflash.errors import InputError
from sparkflash.protocols.dfu_file import (
    BCD_DFUSE,
    Element,
    Suffix,
    Target,
    add_suffix,
    build_dfuse,
    dfu_crc,
    parse_dfuse,
    parse_suffix,
)


def test_crc_check_value_from_the_spec() -> None:
    assert dfu_crc(b"123456789") == 0x340BC6D9


def test_suffix_layout() -> None:
    raw = add_suffix(b"abc", Suffix(0xFFFF, 0x607F, 0x1D50))
    assert raw[:3] == b"abc" and len(raw) == 19
    assert raw[3:15] == bytes.fromhex("ffff 7f60 501d 0001") + b"UFD\x10"
    assert struct.unpack("<I", raw[-4:])[0] == dfu_crc(raw[:-4])
    assert parse_suffix(raw) == Suffix(0xFFFF, 0x607F, 0x1D50, 0x0100, dfu_crc(raw[:-4]))


def test_dfuse_layout_matches_um0391() -> None:
    raw = build_dfuse([Target(0, "Internal", (Element(0x08005000, b"\x01\x02"),))], 0x1D50, 0x607F)
    assert raw[:5] == b"DfuSe" and raw[5] == 1
    assert struct.unpack_from("<I", raw, 6)[0] == len(raw)  # DFUImageSize as dfuse-pack writes it
    assert raw[10] == 1 and raw[11:17] == b"Target" and raw[17] == 0
    assert struct.unpack_from("<I", raw, 18)[0] == 1 and raw[22:30] == b"Internal"
    assert struct.unpack_from("<II", raw, 22 + 255) == (8 + 2, 1)
    assert struct.unpack_from("<II", raw, 285) == (0x08005000, 2) and raw[293:295] == b"\x01\x02"
    assert len(raw) == 11 + 274 + 10 + 16


def test_corruption_is_caught() -> None:
    raw = bytearray(build_dfuse([Target(1, "SPI", (Element(0x80000, bytes(100)),))], 0x1D50, 0x607F))
    raw[300] ^= 1
    with pytest.raises(InputError, match="CRC"):
        parse_dfuse(bytes(raw))
    with pytest.raises(InputError, match="no DFU suffix"):
        parse_suffix(b"x" * 40)
    plain = add_suffix(b"x", Suffix())
    with pytest.raises(InputError, match="not a DfuSe file"):
        parse_dfuse(plain)


def test_lying_element_size_is_caught() -> None:
    good = build_dfuse([Target(1, "", (Element(0, b"abcd"),))], 0x1D50, 0x607F)
    body = bytearray(good[:-16])
    struct.pack_into("<I", body, 11 + 274 + 4, 99)  # element size larger than its target
    bad = add_suffix(bytes(body), Suffix(0xFFFF, 0x607F, 0x1D50, BCD_DFUSE))
    with pytest.raises(InputError, match="runs past its target"):
        parse_dfuse(bad)


elements = st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=64)), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.text(max_size=20), elements), min_size=1, max_size=3))
def test_round_trip(targets: list[tuple[int, str, list[tuple[int, bytes]]]]) -> None:
    ts = [Target(alt, name.replace("\0", ""), tuple(Element(a, d) for a, d in el)) for alt, name, el in targets]
    f = parse_dfuse(build_dfuse(ts, 0x1D50, 0x607F))
    assert [(t.alt, t.elements) for t in f.targets] == [(t.alt, t.elements) for t in ts]
    assert [t.name for t in f.targets] == [t.name for t in ts]
    assert (f.suffix.vendor, f.suffix.product, f.suffix.bcd_dfu) == (0x1D50, 0x607F, BCD_DFUSE)
