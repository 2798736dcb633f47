"""An SVG map of every board memory with the release's regions drawn over its areas.

Each memory is one vertical bar scaled to the same height (128 KiB and 2 MiB side by
side), so the picture shows where things are, not their relative size between chips.
The text is a pure function of the manifest and board (stable for diffs and tests).
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from sparkflash.boards import Board
from sparkflash.manifest.model import Manifest

__all__ = ["render_svg"]

_H, _W, _TOP, _GAP, _LABEL = 640, 120, 40, 260, 150
_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")


def _attr(s: str) -> str:
    return escape(s, {'"': "&quot;"})


def render_svg(manifest: Manifest, board: Board) -> str:
    """SVG text (UTF-8 safe, no external references)."""
    width = _LABEL + len(board.memories) * (_W + _GAP)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{_H + _TOP + 40}" '
        f'font-family="monospace" font-size="11">',
        f"<title>{escape(manifest.name)} {escape(manifest.version)} on {escape(board.name)}</title>",
    ]
    colors = {r.name: _COLORS[i % len(_COLORS)] for i, r in enumerate(manifest.regions)}
    for i, mem in enumerate(board.memories):
        x = _LABEL + i * (_W + _GAP)
        scale = _H / mem.size

        def y(addr: int, _base: int = mem.base, _scale: float = scale) -> float:
            return round(_TOP + (addr - _base) * _scale, 2)

        out.append(f'<text x="{x}" y="{_TOP - 16}" font-weight="bold">{escape(mem.name)} '
                   f"(0x{mem.base:08x}, {mem.size // 1024} KiB)</text>")
        out.append(f'<rect x="{x}" y="{_TOP}" width="{_W}" height="{_H}" fill="#f4f4f4" stroke="#444"/>')
        label_y = 0.0  # labels are pushed down so that small neighbouring areas stay readable
        for a in sorted(mem.areas, key=lambda a: (a.start, -a.size)):
            fill = "#d9d9d9" if a.protected else "none"
            out.append(f'<rect x="{x}" y="{y(a.start)}" width="{_W}" height="{max(round(y(a.end) - y(a.start), 2), 0.5)}" '
                       f'fill="{fill}" stroke="#999" stroke-dasharray="3,2"><title>{_attr(a.name)} 0x{a.start:08x}..'
                       f'0x{a.end:08x}{" (protected)" if a.protected else ""}</title></rect>')
            label_y = max(y(a.start) + 10, label_y + 12)
            out.append(f'<text x="{x - 6}" y="{label_y}" text-anchor="end" fill="#666">'
                       f"{escape(a.name)} 0x{a.start:x}</text>")
        label_y = 0.0
        for r in sorted((r for r in manifest.regions if r.memory == mem.name), key=lambda r: r.address):
            h = max(round(y(r.end) - y(r.address), 2), 2)
            out.append(f'<rect x="{x + 8}" y="{y(r.address)}" width="{_W - 16}" height="{h}" fill="{colors[r.name]}" '
                       f'fill-opacity="0.85"><title>{_attr(r.name)} 0x{r.address:08x}..0x{r.end:08x} '
                       f"{r.size} B sha256 {r.sha256[:16]}</title></rect>")
            label_y = max(y(r.address) + 10, label_y + 12)
            out.append(f'<text x="{x + _W + 6}" y="{label_y}" fill="{colors[r.name]}">'
                       f"{escape(r.name)} 0x{r.address:x} {r.size} B</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
