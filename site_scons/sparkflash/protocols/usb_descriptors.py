"""USB standard descriptors a DFU host reads (device, configuration + DFU functional, strings).

Both sides use this module: the host parses what pyusb or the virtual core's socket
returns, and the virtual core encodes the Core bootloader's descriptors with it, so
the two go through the same bytes as on a real bus.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sparkflash.errors import RemoteProtocolError

__all__ = [
    "DeviceDescriptor", "DfuAlt", "DfuConfig", "parse_device", "parse_config", "parse_string",
    "encode_device", "encode_config", "encode_string", "GET_DESCRIPTOR", "SET_INTERFACE",
    "DT_DEVICE", "DT_CONFIG", "DT_STRING", "DT_DFU_FUNCTIONAL",
]

GET_DESCRIPTOR, SET_INTERFACE = 6, 11
DT_DEVICE, DT_CONFIG, DT_STRING, DT_INTERFACE, DT_DFU_FUNCTIONAL = 1, 2, 3, 4, 0x21
_DEV = struct.Struct("<BBHBBBBHHHBBBB")
_CFG = struct.Struct("<BBHBBBBB")
_IF = struct.Struct("<BBBBBBBBB")
_FUNC = struct.Struct("<BBBHHH")


@dataclass(frozen=True)
class DeviceDescriptor:
    vendor: int
    product: int
    bcd_device: int
    i_manufacturer: int
    i_product: int
    i_serial: int


@dataclass(frozen=True)
class DfuAlt:
    interface: int
    alt: int
    i_interface: int


@dataclass(frozen=True)
class DfuConfig:
    alts: tuple[DfuAlt, ...]
    attributes: int  # bmAttributes of the DFU functional descriptor
    detach_timeout_ms: int
    transfer_size: int
    bcd_dfu: int


def parse_device(raw: bytes) -> DeviceDescriptor:
    if len(raw) < _DEV.size or raw[1] != DT_DEVICE:
        raise RemoteProtocolError(f"bad USB device descriptor ({len(raw)} bytes: {raw[:4].hex()})")
    f = _DEV.unpack_from(raw)
    return DeviceDescriptor(f[7], f[8], f[9], f[10], f[11], f[12])


def parse_config(raw: bytes) -> DfuConfig:
    """The DFU-mode interfaces (class 0xFE/1/2) and the functional descriptor of a configuration."""
    alts: list[DfuAlt] = []
    func: tuple[int, ...] | None = None
    off = 0
    while off + 2 <= len(raw):
        length, kind = raw[off], raw[off + 1]
        if length < 2 or off + length > len(raw):
            raise RemoteProtocolError(f"malformed USB configuration descriptor at offset {off} (bLength {length})")
        if kind == DT_INTERFACE and length >= _IF.size:
            _, _, num, alt, _, cls, sub, proto, istr = _IF.unpack_from(raw, off)
            if (cls, sub, proto) == (0xFE, 1, 2):
                alts.append(DfuAlt(num, alt, istr))
        elif kind == DT_DFU_FUNCTIONAL and length >= 7:
            func = _FUNC.unpack_from(raw.ljust(off + _FUNC.size, b"\0"), off)[2:]
        off += length
    if not alts:
        raise RemoteProtocolError("the device has no DFU-mode interface (class 0xFE/1/2): is it in DFU mode?")
    attrs, detach, ts, bcd = func if func is not None else (0, 0, 1024, 0x011A)
    return DfuConfig(tuple(alts), attrs, detach, ts, bcd)


def parse_string(raw: bytes) -> str:
    """A string descriptor's text, cut at the first NUL (the Core pads its alt strings)."""
    if len(raw) < 2 or raw[1] != DT_STRING:
        raise RemoteProtocolError(f"bad USB string descriptor ({raw[:4].hex()})")
    return raw[2 : raw[0]].decode("utf-16-le", errors="replace").split("\0", 1)[0]


def encode_device(vendor: int, product: int, bcd_device: int, bcd_usb: int = 0x0100) -> bytes:
    return _DEV.pack(_DEV.size, DT_DEVICE, bcd_usb, 0, 0, 0, 64, vendor, product, bcd_device, 1, 2, 3, 1)


def encode_config(alt_strings: list[int], attributes: int, detach_ms: int, transfer_size: int, bcd_dfu: int) -> bytes:
    """One configuration, interface 0 with one DFU alt setting per string index, one functional descriptor."""
    ifs = b"".join(_IF.pack(_IF.size, DT_INTERFACE, 0, alt, 0, 0xFE, 1, 2, s) for alt, s in enumerate(alt_strings))
    func = _FUNC.pack(_FUNC.size, DT_DFU_FUNCTIONAL, attributes, detach_ms, transfer_size, bcd_dfu)
    total = _CFG.size + len(ifs) + len(func)
    return _CFG.pack(_CFG.size, DT_CONFIG, total, 1, 1, 0, 0x80, 50) + ifs + func


def encode_string(text: str, length: int | None = None) -> bytes:
    """A string descriptor; `length` > the text pads with NULs (the Core declares bLength 98)."""
    body = text.encode("utf-16-le")
    n = max(length or 0, 2 + len(body))
    return (bytes([n, DT_STRING]) + body).ljust(n, b"\0")
