"""Built-in deterministic blob generators, so example data need not be committed as binary.

`hexfont`: a 16x16 1-bit bitmap font whose every glyph is a box showing its own code
point in four hex digits (the idea of GNU Unifont's fallback glyphs). It has the size
and shape of a real font blob and is byte-identical on every machine.
Layout: 16-byte header b"HEXF", u16 width, u16 height, u32 first code point, u32 count;
then `count` glyphs of 32 bytes (16 rows x 2 bytes, MSB = leftmost pixel).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from sparkflash.errors import InputError

__all__ = ["GENERATORS", "generate", "hexfont"]

# 3x5 hex digits, one int per row, bit 2 = left pixel.
_DIGITS = (
    (7, 5, 5, 5, 7), (2, 6, 2, 2, 7), (7, 1, 7, 4, 7), (7, 1, 7, 1, 7),
    (5, 5, 7, 1, 1), (7, 4, 7, 1, 7), (7, 4, 7, 5, 7), (7, 1, 1, 1, 1),
    (7, 5, 7, 5, 7), (7, 5, 7, 1, 7), (7, 5, 7, 5, 5), (6, 5, 6, 5, 6),
    (7, 4, 4, 4, 7), (6, 5, 5, 5, 6), (7, 4, 7, 4, 7), (7, 4, 7, 4, 4),
)
_HEADER = struct.Struct("<4sHHII")
MAX_GLYPHS = 0x10000


def _glyph(cp: int) -> bytes:
    rows = [0] * 16
    rows[1] = rows[14] = 0x7FFE  # box top and bottom
    for y in range(2, 14):
        rows[y] = 0x4002  # box sides
    digits = [(cp >> s) & 0xF for s in (12, 8, 4, 0)]
    for i, d in enumerate(digits):
        top, left = (3, 9)[i // 2], (4, 9)[i % 2]
        for dy, bits in enumerate(_DIGITS[d]):
            rows[top + dy] |= bits << (16 - left - 3)
    return b"".join(r.to_bytes(2, "big") for r in rows)


def hexfont(first: int = 0x20, count: int = 2047) -> bytes:
    if not 0 < count <= MAX_GLYPHS or not 0 <= first <= 0xFFFF:
        raise InputError(f"hexfont: count must be 1..{MAX_GLYPHS} and first 0..0xFFFF (got first={first}, count={count})")
    return _HEADER.pack(b"HEXF", 16, 16, first, count) + b"".join(_glyph((first + i) & 0xFFFF) for i in range(count))


GENERATORS: dict[str, Callable[..., bytes]] = {"hexfont": hexfont}


def generate(name: str, params: dict[str, int]) -> bytes:
    """Run a named generator; unknown names fail with the list of valid ones."""
    gen = GENERATORS.get(name)
    if gen is None:
        raise InputError(f"unknown generator {name!r} (known: {', '.join(sorted(GENERATORS))})")
    return gen(**params)
