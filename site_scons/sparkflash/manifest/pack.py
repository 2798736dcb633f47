"""Directory → one blob ("SFPK" pack), deterministic so a release hashes the same everywhere.

Only names and bytes go in: no timestamps, owners or modes, and files are sorted by
their UTF-8 relative path, so two checkouts of the same tree give identical bytes.
Format (little-endian; documented in docs/manifest.md):

    header  16 B: magic b"SFPK", u16 version (1), u16 file count,
                  u32 index size, u32 total blob size
    index   per file: u32 data offset, u32 size, u32 crc32, u16 name length, name (UTF-8, "/")
    data    each file's bytes at its offset, every offset 4-byte aligned (gaps are 0x00)
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from sparkflash.errors import InputError
from sparkflash.manifest.sources import collect_tree

__all__ = ["PACK_MAGIC", "PACK_VERSION", "pack_dir", "pack_files", "unpack"]

PACK_MAGIC = b"SFPK"
PACK_VERSION = 1
_HEADER = struct.Struct("<4sHHII")
_ENTRY = struct.Struct("<IIIH")
_ALIGN = 4


def pack_files(files: dict[str, bytes]) -> bytes:
    """Pack name → bytes; the order is by UTF-8 name, whatever order the dict has."""
    if len(files) > 0xFFFF:
        raise InputError(f"{len(files)} files is too many for one pack (max 65535)")
    names = sorted(files, key=lambda n: n.encode("utf-8"))
    index_size = sum(_ENTRY.size + len(n.encode("utf-8")) for n in names)
    offset = _HEADER.size + index_size
    index, data = bytearray(), bytearray()
    for n in names:
        raw_name = n.encode("utf-8")
        if len(raw_name) > 0xFFFF:
            raise InputError(f"{n[:60]}…: file name too long to pack")
        pad = -(offset + len(data)) % _ALIGN
        data += b"\0" * pad
        body = files[n]
        index += _ENTRY.pack(offset + len(data), len(body), zlib.crc32(body) & 0xFFFFFFFF, len(raw_name)) + raw_name
        data += body
    total = _HEADER.size + index_size + len(data)
    if total >= 1 << 32:
        raise InputError("directory too large to pack (4 GiB limit)")
    return _HEADER.pack(PACK_MAGIC, PACK_VERSION, len(names), index_size, total) + bytes(index) + bytes(data)


def pack_dir(root: Path, limit: int = 1 << 32) -> bytes:
    """Pack every regular file under `root` (refuses symlinks, special files, unreadable entries,
    and more than `limit` bytes of file data)."""
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    files = collect_tree(root, limit)
    if not files:
        raise InputError(f"{root}: directory has no files to pack")
    return pack_files(files)


def unpack(blob: bytes) -> dict[str, bytes]:
    """Inverse of pack_files; checks every size, offset and crc32."""
    if len(blob) < _HEADER.size:
        raise InputError("pack: shorter than its header")
    magic, version, count, index_size, total = _HEADER.unpack_from(blob)
    if magic != PACK_MAGIC or version != PACK_VERSION:
        raise InputError(f"pack: bad magic/version {magic!r}/{version}")
    if total > len(blob):
        raise InputError(f"pack: header says {total} bytes, have {len(blob)}")
    pos, out = _HEADER.size, {}
    for _ in range(count):
        if pos + _ENTRY.size > _HEADER.size + index_size:
            raise InputError("pack: index truncated")
        off, size, crc, nlen = _ENTRY.unpack_from(blob, pos)
        pos += _ENTRY.size
        name = blob[pos:pos + nlen].decode("utf-8")
        pos += nlen
        body = blob[off:off + size]
        if off + size > total or zlib.crc32(body) & 0xFFFFFFFF != crc:
            raise InputError(f"pack: {name}: data out of range or crc mismatch")
        out[name] = body
    return out
