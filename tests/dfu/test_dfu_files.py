"""Our .dfu files against dfu-util's own tools: dfu-suffix -c, dfuse-pack -d and dfuse-pack's builder."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.cli import main
from sparkflash.manifest.release import open_release
from sparkflash.protocols.dfu_file import Element, Target, build_dfuse, parse_dfuse

pytestmark = pytest.mark.interop


def _run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=60)


def test_release_pack_passes_dfu_suffix_and_dfuse_pack(example_release: Path, tmp_path: Path,
                                                       tool: Callable[[str], str]) -> None:
    suffix_tool, pack_tool = tool("dfu-suffix"), tool("dfuse-pack")
    out = tmp_path / "example.dfu"
    assert main(["dfu", "pack", str(example_release), "--no-verify-signature", "-o", str(out)]) == 0

    chk = _run(suffix_tool, "-c", str(out))
    assert chk.returncode == 0, chk.stderr
    assert "Vendor ID:\t0x1D50" in chk.stdout and "Product ID:\t0x607F" in chk.stdout
    assert "BCD DFU:\t0x011A" in chk.stdout

    dump = _run(pack_tool, "-d", str(out))
    assert "ERROR" not in dump.stdout, dump.stdout
    assert "targets: 2" in dump.stdout and "alt setting: 0" in dump.stdout and "alt setting: 1" in dump.stdout
    rel = open_release(example_release, None, require_signature=False)
    internal = [r for r in rel.manifest.regions if r.memory == "internal"]
    external = sorted((r for r in rel.manifest.regions if r.memory == "external"), key=lambda r: r.address)
    for t, regions in enumerate([internal, external]):
        for e, r in enumerate(regions):
            assert f"{e}, address: 0x{r.address:08x}, size: {r.size}" in dump.stdout
            assert Path(f"{out}.target{t}.image{e}.bin").read_bytes() == rel.blob(r), r.name


def test_corrupted_file_fails_dfu_suffix(tmp_path: Path, tool: Callable[[str], str]) -> None:
    suffix_tool = tool("dfu-suffix")
    raw = bytearray(build_dfuse([Target(1, "SPI", (Element(0x80000, os.urandom(300)),))], 0x1D50, 0x607F))
    raw[100] ^= 0xFF
    bad = tmp_path / "bad.dfu"
    bad.write_bytes(bytes(raw))
    chk = _run(suffix_tool, "-c", str(bad))
    assert chk.returncode != 0 and "CRC" in chk.stderr


def test_byte_identical_to_dfuse_pack(tmp_path: Path, tool: Callable[[str], str]) -> None:
    """Same inputs, same name and bcdDevice as dfuse-pack's defaults: the same bytes."""
    pack_tool = tool("dfuse-pack")
    app, ext = os.urandom(3000), os.urandom(5001)
    (tmp_path / "app.bin").write_bytes(app)
    (tmp_path / "ext.bin").write_bytes(ext)
    ref = tmp_path / "ref.dfu"
    made = _run(pack_tool, "-b", "0x08005000:app.bin", "-b", "0x00080000@1:ext.bin", "-D", "0x1d50:0x607f", str(ref),
                cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    ours = build_dfuse([Target(0, "ST...", (Element(0x08005000, app),)), Target(1, "ST...", (Element(0x80000, ext),))],
                       0x1D50, 0x607F, bcd_device=0)
    assert ours == ref.read_bytes()
    assert [t.elements[0].data for t in parse_dfuse(ref.read_bytes()).targets] == [app, ext]


def test_dfu_pack_pieces_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.bin").write_bytes(b"a" * 10)
    (tmp_path / "b.bin").write_bytes(b"b" * 20)
    out = tmp_path / "x.dfu"
    assert main(["dfu", "pack", f"{tmp_path}/b.bin@0x80000", f"{tmp_path}/a.bin@0x08005000", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["dfu", "info", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(t["alt"], t["elements"]) for t in doc["targets"]] == [
        (0, [{"address": 0x08005000, "size": 10}]), (1, [{"address": 0x80000, "size": 20}])]
    assert main(["dfu", "pack", f"{tmp_path}/a.bin@0x08000000", "-o", str(out)]) == 2
    assert "protected area 'bootloader'" in capsys.readouterr().err


def test_suffix_added_by_dfu_suffix_is_read_back(tmp_path: Path, tool: Callable[[str], str]) -> None:
    """dfu-suffix -a (as Particle's build did) and our add_suffix give the same bytes."""
    from sparkflash.protocols.dfu_file import Suffix, add_suffix, parse_suffix

    payload = os.urandom(777)
    f = tmp_path / "app.dfu"
    f.write_bytes(payload)
    made = _run(tool("dfu-suffix"), "-v", "1d50", "-p", "607f", "-a", str(f))
    assert made.returncode == 0, made.stderr
    raw = f.read_bytes()
    assert raw == add_suffix(payload, Suffix(0xFFFF, 0x607F, 0x1D50))
    assert parse_suffix(raw).bcd_dfu == 0x0100
