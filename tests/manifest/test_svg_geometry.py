"""The SVG map is readable: a title, every label inside the canvas and apart from the
others in its column, each leader line ending on the thing it names, an address axis and
the free space of each memory."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sparkflash.boards import load_board
from sparkflash.manifest.build import plan_release
from sparkflash.manifest.model import Manifest, Region
from sparkflash.manifest.svg import CHAR_WIDTH, LINE_HEIGHT, render_svg

ROOT = Path(__file__).resolve().parents[2]
NS = {"s": "http://www.w3.org/2000/svg"}


def _example(tmp_path: Path) -> Manifest:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\x00\x50\x00\x20\x31\x51\x00\x08" + bytes(20_000))
    return plan_release(ROOT / "manifests" / "example.yaml", artifacts={"firmware": fw}).manifest


def _crowded(tmp_path: Path) -> Manifest:
    """Many tiny regions side by side near the top of the SPI flash, and one at its very end."""
    board = load_board("spark-core")
    ext = next(m for m in board.memories if m.name == "external")
    regions = [Region(f"r{i}", "external", 0x3000 + i * 0x1000, 16, "0" * 64, 0, (0x3000 + i * 0x1000,), "data", False)
               for i in range(12)]
    regions.append(Region("last", "external", ext.end - 0x1000, 0x1000, "1" * 64, 0, (ext.end - 0x1000,), "data", False))
    return Manifest("crowded", "0.1.0", board.name, tuple(regions))


@pytest.mark.parametrize("which", ["example", "crowded"])
def test_labels_inside_the_canvas_and_apart(which: str, tmp_path: Path) -> None:
    m = _example(tmp_path) if which == "example" else _crowded(tmp_path)
    root = ET.fromstring(render_svg(m, load_board(m.board)))
    width, height = float(root.attrib["width"]), float(root.attrib["height"])
    texts = root.findall("s:text", NS)
    assert texts
    columns: dict[float, list[float]] = {}
    for t in texts:
        x, y = float(t.attrib["x"]), float(t.attrib["y"])
        size = float(t.attrib.get("font-size", 11))
        w = len(t.text or "") * CHAR_WIDTH * size / 11
        left = x - w if t.attrib.get("text-anchor") == "end" else x
        assert 0 <= left and left + w <= width, f"{t.text!r} runs off the canvas ({left:.0f}..{left + w:.0f} of {width})"
        assert size <= y <= height, f"{t.text!r} at y={y} is outside 0..{height}"
        columns.setdefault(x, []).append(y)
    for x, ys in columns.items():
        ys.sort()
        gaps = [b - a for a, b in zip(ys, ys[1:], strict=False)]
        assert all(g >= LINE_HEIGHT - 0.01 for g in gaps), f"labels at x={x} overlap: {ys}"
    # every region is named once, with its address and a binary size
    words = [t.text or "" for t in texts]
    for r in m.regions:
        assert sum(1 for w in words if w.startswith(f"{r.name} 0x{r.address:x} ")) == 1, r.name
    assert not any(re.search(r"\d+ (kB|MB)\b", w) for w in words)


def test_leaders_end_on_what_they_name(tmp_path: Path) -> None:
    m = _crowded(tmp_path)
    root = ET.fromstring(render_svg(m, load_board(m.board)))
    rects = {(r.findtext("s:title", "", NS) or "").split(" ")[0]: r for r in root.findall("s:rect", NS)}
    texts = {(t.text or "").split(" ")[0]: t for t in root.findall("s:text", NS)}
    lines = root.findall("s:polyline", NS)
    for region in m.regions:
        rect, label = rects[region.name], texts[region.name]
        top, h = float(rect.attrib["y"]), float(rect.attrib["height"])
        ends = [[tuple(map(float, p.split(","))) for p in ln.attrib["points"].split()] for ln in lines]
        leader = next(e for e in ends if abs(e[1][1] - (float(label.attrib["y"]) - 4)) < 0.01 and top <= e[0][1] <= top + h)
        assert float(label.attrib["x"]) > leader[1][0]


def test_title_axis_and_free_space(tmp_path: Path) -> None:
    m = _example(tmp_path)
    svg = render_svg(m, load_board(m.board))
    root = ET.fromstring(svg)
    words = [t.text or "" for t in root.findall("s:text", NS)]
    assert words[0].startswith(f"{m.name} {m.version} on spark-core")
    assert "0x08000000" in words and "0x08020000" in words and "0x00200000" in words  # both axes, both ends
    assert any(w.startswith("free: ") and w.endswith(" of 2 MiB") for w in words)
    assert any(w.startswith("free: ") and w.endswith(" of 128 KiB") for w in words)
