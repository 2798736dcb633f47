"""`scons -c manifest` removes the release (dist/) and nothing of the firmware build."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _scons(proj: Path, *args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "SCons", "-Q", *args], cwd=proj, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def test_clean_manifest_keeps_the_firmware(tmp_path: Path, tool: Callable[[str], str]) -> None:
    tool("arm-none-eabi-gcc")
    proj = tmp_path / "proj"
    shutil.copytree(ROOT / "examples", proj / "examples")
    (proj / "manifests").mkdir()
    shutil.copy2(ROOT / "manifests" / "example.yaml", proj / "manifests")
    shutil.copytree(ROOT / "manifests" / "example", proj / "manifests" / "example")
    (proj / "SConstruct").write_text('import sparkflash.scons\n'
                                     'env = Environment(tools=["sparkflash_all"], toolpath=[sparkflash.scons.toolpath()])\n')
    _scons(proj, "-j2", "sign")
    out = proj / "build" / "release"
    firmware = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and "dist" not in p.parts)
    assert Path("firmware.bin") in firmware and any(p.suffix == ".o" for p in firmware)
    assert (out / "dist" / "manifest.json.sig").is_file()
    _scons(proj, "-c", "manifest")
    assert not (out / "dist" / "manifest.json").exists() and not (out / "dist" / "manifest.json.sig").exists()
    assert not any(p.is_file() for p in (out / "dist").rglob("*")), "blobs left in dist/"
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and "dist" not in p.parts) == firmware
    assert (proj / "build" / "keys" / "dev.pem").is_file()  # never the dev key
    _scons(proj, "-c")  # a plain clean still removes the firmware
    assert not (out / "firmware.bin").exists()
