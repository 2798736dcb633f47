"""An SVG map of every board memory with the release's regions drawn over its areas.

Each memory is one vertical bar scaled to the same height (128 KiB and 2 MiB side by
side), so the picture shows where things are, not their relative size between chips.
Left of each bar an address axis; right of it one label per area and region, spread so
none overlaps and none leaves the canvas, each tied to its place by a leader line; free
space (writable, no region) is drawn and summed under the bar. The text is a pure
function of the manifest and board (stable for diffs and tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from sparkflash.boards import Board, Memory
from sparkflash.manifest.model import Manifest

__all__ = ["render_svg", "CHAR_WIDTH", "LINE_HEIGHT"]

CHAR_WIDTH = 6.7  # px per character of 11 px monospace: what a test may assume for text extents
LINE_HEIGHT = 13
_H, _TOP, _BOTTOM = 600, 70, 60  # bar height; room above (title, heading) and below (free space)
_AXIS, _BAR, _LABELS, _MARGIN = 96, 120, 290, 16
_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")
_FREE = "#dff0d8"


def _attr(s: str) -> str:
    return escape(s, {'"': "&quot;"})


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


@dataclass
class _Label:
    text: str
    want: float  # y of the thing it names
    color: str
    y: float = 0.0


def _spread(labels: list[_Label], top: float, bottom: float) -> None:
    """Place labels in order, LINE_HEIGHT apart, as near their target as the room allows."""
    labels.sort(key=lambda lb: lb.want)
    prev = top - LINE_HEIGHT
    for lb in labels:
        lb.y = max(lb.want, prev + LINE_HEIGHT, top)
        prev = lb.y
    nxt = bottom + LINE_HEIGHT
    for lb in reversed(labels):  # pushed past the bottom: slide back up
        lb.y = min(lb.y, nxt - LINE_HEIGHT, bottom)
        nxt = lb.y


def _free_spans(mem: Memory, used: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Writable bytes that no region uses (protected areas are not free)."""
    blocked = sorted(used + [(a.start, a.end) for a in mem.areas if a.protected])
    spans, pos = [], mem.base
    for start, end in blocked:
        if start > pos:
            spans.append((pos, start))
        pos = max(pos, end)
    if pos < mem.end:
        spans.append((pos, mem.end))
    return spans


def _tick_step(size: int) -> int:
    step = 1
    while size // step > 8:
        step *= 2
    return step


def render_svg(manifest: Manifest, board: Board) -> str:
    """SVG text (UTF-8 safe, no external references)."""
    col = _AXIS + _BAR + _LABELS
    width = _MARGIN * 2 + len(board.memories) * col
    height = _TOP + _H + _BOTTOM
    title = f"{manifest.name} {manifest.version} on {board.name}: {len(manifest.regions)} regions"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="monospace" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<text x="{_MARGIN}" y="22" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    colors = {r.name: _COLORS[i % len(_COLORS)] for i, r in enumerate(manifest.regions)}
    for i, mem in enumerate(board.memories):
        x0 = _MARGIN + i * col
        bar = x0 + _AXIS
        scale = _H / mem.size

        def y(addr: int, _base: int = mem.base, _scale: float = scale) -> float:
            return round(_TOP + (addr - _base) * _scale, 2)

        regions = sorted((r for r in manifest.regions if r.memory == mem.name), key=lambda r: r.address)
        out.append(f'<text x="{bar}" y="{_TOP - 12}" font-weight="bold">{escape(mem.name)} '
                   f"(0x{mem.base:08x}, {_size(mem.size)}, {_size(mem.sector_size)} sectors)</text>")
        out.append(f'<rect x="{bar}" y="{_TOP}" width="{_BAR}" height="{_H}" fill="#f4f4f4" stroke="#444"/>')
        # address axis: evenly spaced ticks, so they never collide
        step = _tick_step(mem.size)
        for addr in range(mem.base, mem.end + 1, step):
            out.append(f'<line x1="{bar - 5}" y1="{y(addr)}" x2="{bar}" y2="{y(addr)}" stroke="#444"/>')
            out.append(f'<text x="{bar - 8}" y="{y(addr) + 4}" text-anchor="end" fill="#444">0x{addr:08x}</text>')
        used = [(r.address, r.end) for r in regions]
        free = _free_spans(mem, used)
        for start, end in free:
            out.append(f'<rect x="{bar + 1}" y="{y(start)}" width="{_BAR - 2}" height="{max(round(y(end) - y(start), 2), 0.5)}" '
                       f'fill="{_FREE}"><title>free 0x{start:08x}..0x{end:08x} ({_size(end - start)})</title></rect>')
        labels: list[_Label] = []
        for a in sorted(mem.areas, key=lambda a: (a.start, -a.size)):
            fill = "#c8c8c8" if a.protected else "none"
            out.append(f'<rect x="{bar}" y="{y(a.start)}" width="{_BAR}" height="{max(round(y(a.end) - y(a.start), 2), 0.5)}" '
                       f'fill="{fill}" stroke="#999" stroke-dasharray="3,2"><title>{_attr(a.name)} 0x{a.start:08x}..'
                       f'0x{a.end:08x}{" (protected)" if a.protected else ""}</title></rect>')
            labels.append(_Label(f"{a.name} 0x{a.start:x}{' (protected)' if a.protected else ''}",
                                 (y(a.start) + y(a.end)) / 2, "#666"))
        for r in regions:
            h = max(round(y(r.end) - y(r.address), 2), 2)
            out.append(f'<rect x="{bar + 10}" y="{y(r.address)}" width="{_BAR - 20}" height="{h}" fill="{colors[r.name]}" '
                       f'fill-opacity="0.9"><title>{_attr(r.name)} 0x{r.address:08x}..0x{r.end:08x} '
                       f"{_size(r.size)} sha256 {r.sha256[:16]}</title></rect>")
            labels.append(_Label(f"{r.name} 0x{r.address:x} {_size(r.size)}", y(r.address) + h / 2, colors[r.name]))
        _spread(labels, _TOP + 4, _TOP + _H)
        tx = bar + _BAR + 34
        for lb in labels:
            out.append(f'<polyline points="{bar + _BAR},{round(lb.want, 2)} {tx - 6},{round(lb.y - 4, 2)}" '
                       f'fill="none" stroke="{lb.color}" stroke-width="0.8"/>')
            out.append(f'<text x="{tx}" y="{round(lb.y, 2)}" fill="{lb.color}">{escape(lb.text)}</text>')
        total_free = sum(e - s for s, e in free)
        biggest = max(free, key=lambda s: s[1] - s[0], default=None)
        out.append(f'<rect x="{bar}" y="{_TOP + _H + 14}" width="10" height="10" fill="{_FREE}" stroke="#999"/>')
        out.append(f'<text x="{bar + 16}" y="{_TOP + _H + 23}">free: {_size(total_free)} of {_size(mem.size)}</text>')
        if biggest is not None:
            out.append(f'<text x="{bar + 16}" y="{_TOP + _H + 23 + LINE_HEIGHT}" fill="#444">largest 0x{biggest[0]:x}'
                       f"..0x{biggest[1]:x} ({_size(biggest[1] - biggest[0])})</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
