"""The `manifest` and `sign` SCons targets, run by the real scons in a copy of manifests/.

The SConstruct here stands in for the project's: it provides SPARKFLASH_FIRMWARE_BIN
(a tiny fake firmware, so no ARM toolchain is needed) and loads the tool the same way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sparkflash.manifest.keys import TrustStore
from sparkflash.manifest.release import open_release

ROOT = Path(__file__).resolve().parents[2]
SCONS = Path(sys.executable).with_name("scons")

SCONSTRUCT = f"""
env = Environment(tools=[], toolpath=[{str(ROOT / 'site_scons' / 'sparkflash' / 'scons')!r}])
env['SPARKFLASH_FIRMWARE_BIN'] = env.File('firmware.bin')
env['SPARKFLASH_VARIANT_DIR'] = env.Dir('build/release')
# --- release targets: manifest, sign, publish, flash (sparkflash/scons/sparkflash_release.py, sparkflash_deploy.py) ---
env.Tool('sparkflash_release')
"""


@pytest.fixture
def checkout(tmp_path: Path, firmware: Path) -> Path:
    if not SCONS.exists():
        pytest.fail(f"{SCONS} missing: scons is a dependency in pyproject.toml")
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "manifests", root / "manifests")  # follows the boards/ symlink
    shutil.copy(firmware, root / "firmware.bin")
    (root / "SConstruct").write_text(SCONSTRUCT)
    return root


def scons(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCONS), "-Q", *args], cwd=root, capture_output=True, text=True, timeout=120)


def built(root: Path, *args: str) -> bool:
    """Run scons; True if the manifest was laid out again."""
    r = scons(root, "manifest", "sign", *args)
    assert r.returncode == 0, r.stderr
    return "Laying out release" in r.stdout


def test_manifest_sign_from_clean_checkout(checkout: Path) -> None:
    r = scons(checkout, "manifest", "sign")
    assert r.returncode == 0, r.stderr
    dist = checkout / "build" / "release" / "dist"
    key = checkout / "build" / "keys" / "dev.pub.pem"
    assert key.is_file() and (checkout / "build" / "keys" / "dev.pem").is_file()
    rel = open_release(dist / "manifest.json", TrustStore.from_paths([key]))
    rel.verify_blobs()
    assert [(r.name, r.memory, r.address, r.size) for r in rel.manifest.regions][1:] == [
        ("font", "external", 0x80000, 0x10000), ("web", "external", 0x100000, 0x1000)]
    assert len(list((dist / "blobs" / "sha256").iterdir())) == 3


def test_rebuilds_only_when_an_input_or_flag_changes(checkout: Path) -> None:
    assert built(checkout)
    assert not built(checkout)  # no-op
    (checkout / "manifests" / "example" / "web" / "css" / "core.css").write_text("body{}\n")
    assert built(checkout)  # a file inside the packed directory
    (checkout / "manifests" / "example" / "web" / "new.txt").write_text("new\n")
    assert built(checkout)  # a new file in the directory
    assert built(checkout, "STRICT_SECTORS=1")  # a flag
    assert not built(checkout, "STRICT_SECTORS=1")
    (checkout / "firmware.bin").write_bytes((checkout / "firmware.bin").read_bytes() + b"\0" * 4)
    assert built(checkout, "STRICT_SECTORS=1")  # the firmware
    y = checkout / "manifests" / "example.yaml"
    y.write_text(y.read_text().replace('version: "1.0.0"', 'version: "1.0.1"'))
    assert built(checkout, "STRICT_SECTORS=1")  # the YAML
    m = open_release(checkout / "build" / "release" / "dist" / "manifest.json",
                     TrustStore.from_paths([checkout / "build" / "keys" / "dev.pub.pem"]))
    assert m.manifest.version == "1.0.1"


def test_error_is_one_line_without_traceback(checkout: Path) -> None:
    y = checkout / "manifests" / "example.yaml"
    y.write_text(y.read_text().replace("address: 0x100000", "address: 0x8f000"))
    r = scons(checkout, "manifest")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("scons: *** [build/release/dist/manifest.json] manifests/example.yaml:")
    assert "region 'web' at external 0x0008f000..0x00090000: overlaps region 'font'" in r.stderr


def test_other_manifest_and_key(checkout: Path, dev_key: tuple[Path, Path]) -> None:
    y = checkout / "manifests" / "other.yaml"
    y.write_text((checkout / "manifests" / "example.yaml").read_text().replace("name: example", "name: other"))
    r = scons(checkout, "sign", "MANIFEST=manifests/other.yaml", f"KEY={dev_key[0]}")
    assert r.returncode == 0, r.stderr
    assert not (checkout / "build" / "keys").exists()
    rel = open_release(checkout / "build" / "release" / "dist" / "manifest.json", TrustStore.from_paths([dev_key[1]]))
    assert rel.manifest.name == "other"
