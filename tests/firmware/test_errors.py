"""Build failures say what and where: missing toolchain (exit 2, names the Debian
package), missing sibling tree (names the path), compiler errors verbatim, oversize."""

from __future__ import annotations

import os
from pathlib import Path

from sparkflash.firmware.workspace import run_scons


def test_missing_toolchain_arm_toolchain(fresh_checkout: Path) -> None:
    r = run_scons(fresh_checkout, "ARM_TOOLCHAIN=/nonexistent")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "gcc-arm-none-eabi" in lines[0] and "/nonexistent" in lines[0]
    assert not (fresh_checkout / "build").exists()


def test_missing_toolchain_on_path(fresh_checkout: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    r = run_scons(fresh_checkout, env={"PATH": str(empty)})
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "gcc-arm-none-eabi" in r.stderr and "PATH" in r.stderr


def test_missing_sibling_names_expected_path(fresh_checkout: Path) -> None:
    missing = fresh_checkout / "examples" / "core-communication-lib"
    missing.rename(fresh_checkout / "moved-away")
    r = run_scons(fresh_checkout)
    assert r.returncode == 2
    assert str(missing) in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_compiler_error_shown_unchanged(fresh_checkout: Path) -> None:
    src = fresh_checkout / "examples/core-communication-lib/src/crc32.c"
    src.write_text(src.read_text() + "\nint broken(void) { return undeclared_name; }\n")
    line = len(src.read_text().splitlines())
    r = run_scons(fresh_checkout)
    assert r.returncode != 0
    assert f"crc32.c:{line}:" in r.stderr and "error: 'undeclared_name' undeclared" in r.stderr


def test_oversize_image_fails_by_how_many_bytes(fresh_checkout: Path) -> None:
    board = (Path(__file__).parents[2] / "site_scons/sparkflash/boards/spark-core.yaml").read_text()
    small = fresh_checkout / "tiny-board.yaml"
    small.write_text(board.replace("name: spark-core", "name: tiny-core").replace("max_size: 0x1b000", "max_size: 0x1000"))
    r = run_scons(fresh_checkout, f"BOARD={small}")
    assert r.returncode == 2, r.stdout + r.stderr
    size = (fresh_checkout / "build/release/firmware.elf")
    assert size.exists() and not (fresh_checkout / "build/release/firmware.bin").exists()
    assert "exceeds the application area (4096 B) by" in r.stderr
    used = int(r.stderr.split("flash image ")[1].split(" B")[0])
    assert f"by {used - 4096} bytes" in r.stderr
    assert os.path.basename(str(size)) in r.stderr


def test_unknown_variable_is_refused_naming_it(fresh_checkout: Path) -> None:
    """Every tool declares its NAME=value; a typo (here APPP=) stops before anything builds."""
    r = run_scons(fresh_checkout, "APPP=blink")
    assert r.returncode == 2
    assert "unknown variable(s) APPP" in r.stderr and "APP," in r.stderr and "BUCKET" in r.stderr
    assert not (fresh_checkout / "build").exists()


def test_release_and_deploy_variables_are_known(fresh_checkout: Path) -> None:
    r = run_scons(fresh_checkout, "-h", "MANIFEST=m.yaml", "KEY=k.pem", "BUCKET=b", "VIA=dfu", "CLOUD=http://x")
    assert r.returncode == 0, r.stderr
    assert "publish" in r.stdout and "CORE_FIRMWARE" in r.stdout
