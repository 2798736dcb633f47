"""DFU suffix (DFU 1.1) and DfuSe container (ST UM0391) files, written and read byte-exactly.

One target per alt setting, so `dfu-util -D file.dfu` (no -a) sends internal-flash
elements to alt 0 and SPI-flash elements to alt 1. DFUImageSize is written as the
whole file length including the suffix, as dfuse-pack does; readers ignore it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from sparkflash.errors import InputError

__all__ = [
    "Suffix", "Element", "Target", "DfuseFile", "dfu_crc", "add_suffix", "parse_suffix",
    "build_dfuse", "parse_dfuse", "BCD_DFU_PLAIN", "BCD_DFUSE", "SUFFIX_LEN",
]

BCD_DFU_PLAIN = 0x0100
BCD_DFUSE = 0x011A
SUFFIX_LEN = 16
_SUFFIX = struct.Struct("<HHHH3sB")  # without dwCRC
_PREFIX = struct.Struct("<5sBIB")
_TARGET = struct.Struct("<6sBI255sII")
_ELEMENT = struct.Struct("<II")


def dfu_crc(body: bytes) -> int:
    """CRC-32 without the final inversion, as DFU 1.1 defines dwCRC."""
    return zlib.crc32(body) ^ 0xFFFFFFFF


@dataclass(frozen=True)
class Suffix:
    bcd_device: int = 0xFFFF
    product: int = 0xFFFF
    vendor: int = 0xFFFF
    bcd_dfu: int = BCD_DFU_PLAIN
    crc: int = 0


def add_suffix(data: bytes, suffix: Suffix) -> bytes:
    body = data + _SUFFIX.pack(suffix.bcd_device, suffix.product, suffix.vendor, suffix.bcd_dfu, b"UFD", SUFFIX_LEN)
    return body + struct.pack("<I", dfu_crc(body))


def parse_suffix(raw: bytes, origin: str = "file") -> Suffix:
    """The suffix of a .dfu file; InputError if it is missing or its CRC is wrong."""
    if len(raw) < SUFFIX_LEN:
        raise InputError(f"{origin}: {len(raw)} bytes, too short for a DFU suffix")
    dev, prod, vend, bcd, sig, length = _SUFFIX.unpack_from(raw, len(raw) - SUFFIX_LEN)
    (crc,) = struct.unpack_from("<I", raw, len(raw) - 4)
    if sig != b"UFD" or length < SUFFIX_LEN:
        raise InputError(f"{origin}: no DFU suffix (signature {sig!r} at offset {len(raw) - 8})")
    if crc != dfu_crc(raw[:-4]):
        raise InputError(f"{origin}: DFU suffix CRC 0x{crc:08x} does not match the file (0x{dfu_crc(raw[:-4]):08x})")
    return Suffix(dev, prod, vend, bcd, crc)


@dataclass(frozen=True)
class Element:
    address: int
    data: bytes


@dataclass(frozen=True)
class Target:
    alt: int
    name: str
    elements: tuple[Element, ...]


@dataclass(frozen=True)
class DfuseFile:
    targets: tuple[Target, ...]
    suffix: Suffix
    image_size: int = 0  # as stored; not trusted


def build_dfuse(targets: list[Target], vendor: int, product: int, bcd_device: int = 0xFFFF) -> bytes:
    """A DfuSe file with one target block per entry and a DfuSe (0x011A) suffix."""
    body = b""
    for t in targets:
        elems = b"".join(_ELEMENT.pack(e.address, len(e.data)) + e.data for e in t.elements)
        name = t.name.encode()
        if len(name) > 254:
            raise InputError(f"target name {t.name[:20]!r}... is longer than 254 bytes")
        body += _TARGET.pack(b"Target", t.alt, 1 if name else 0, name, len(elems), len(t.elements)) + elems
    total = _PREFIX.size + len(body) + SUFFIX_LEN
    prefix = _PREFIX.pack(b"DfuSe", 1, total, len(targets))
    return add_suffix(prefix + body, Suffix(bcd_device, product, vendor, BCD_DFUSE))


def parse_dfuse(raw: bytes, origin: str = "file") -> DfuseFile:
    """Parse and check a DfuSe file: suffix CRC, signatures, and every size field."""
    suffix = parse_suffix(raw, origin)
    if suffix.bcd_dfu != BCD_DFUSE:
        raise InputError(f"{origin}: bcdDFU 0x{suffix.bcd_dfu:04x} is not a DfuSe file (0x011a)")
    body = raw[: len(raw) - SUFFIX_LEN]
    if len(body) < _PREFIX.size:
        raise InputError(f"{origin}: too short for a DfuSe prefix")
    sig, version, image_size, ntargets = _PREFIX.unpack_from(body)
    if sig != b"DfuSe" or version != 1:
        raise InputError(f"{origin}: no DfuSe prefix (signature {sig!r}, version {version})")
    off, targets = _PREFIX.size, []
    for t in range(ntargets):
        if off + _TARGET.size > len(body):
            raise InputError(f"{origin}: target {t} at offset {off} runs past the end of the file")
        tsig, alt, named, name, tsize, nelem = _TARGET.unpack_from(body, off)
        if tsig != b"Target":
            raise InputError(f"{origin}: target {t} at offset {off}: signature {tsig!r}, expected b'Target'")
        off += _TARGET.size
        end, elems = off + tsize, []
        if end > len(body):
            raise InputError(f"{origin}: target {t} size {tsize} runs past the end of the file")
        for e in range(nelem):
            if off + _ELEMENT.size > end:
                raise InputError(f"{origin}: target {t} element {e} at offset {off} runs past its target")
            addr, esize = _ELEMENT.unpack_from(body, off)
            off += _ELEMENT.size
            if off + esize > end:
                raise InputError(f"{origin}: target {t} element {e} (0x{addr:08x}, {esize} bytes) runs past its target")
            elems.append(Element(addr, body[off : off + esize]))
            off += esize
        if off != end:
            raise InputError(f"{origin}: target {t}: {end - off} bytes left over after {nelem} elements")
        label = name.split(b"\0", 1)[0].decode(errors="replace") if named & 0xFF else ""
        targets.append(Target(alt, label, tuple(elems)))
    if off != len(body):
        raise InputError(f"{origin}: {len(body) - off} unexpected bytes after the last target")
    return DfuseFile(tuple(targets), suffix, image_size)
