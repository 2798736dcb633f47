"""Every input that can change an output is a dependency (issue #12 point 3): each trap
below changes one input after a build, rebuilds, and requires the rebuilt outputs to be
those of a clean build from the same inputs. Toolchain traps edit a COPY of the
installed toolchain (a tree of symlinks with real copies of the files changed), never
the installed one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.firmware.toolchain import find_toolchain
from sparkflash.firmware.workspace import run_scons
from sparkflash.scons.stored_hashes import HASH_FORMAT

_COMMANDS = re.compile(r"^(CC|CXX|AS|AR|LINK)\s+(\S+)", re.MULTILINE)
MFLAGS = ("-mcpu=cortex-m3", "-mthumb")


def _ran(out: str) -> set[tuple[str, str]]:
    return {(m.group(1), Path(m.group(2)).name) for m in _COMMANDS.finditer(out)}


def _build(checkout: Path, *args: str) -> set[tuple[str, str]]:
    r = run_scons(checkout, "-j2", *args)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return _ran(r.stdout)


def _same_as_clean_build(checkout: Path, tmp_path: Path, *args: str) -> None:
    """A copy of the checkout's sources, built from scratch, gives the same .bin and .hex."""
    ref = tmp_path / "reference"
    def outputs(d: str, names: list[str]) -> list[str]:
        return [n for n in names if n.startswith(".sconsign") or (n == "build" and Path(d) == checkout)]

    shutil.copytree(checkout, ref, ignore=outputs, symlinks=True)
    _build(ref, *args)
    for ext in ("bin", "hex"):
        name = f"build/release/firmware.{ext}"
        assert (checkout / name).read_bytes() == (ref / name).read_bytes(), f"stale firmware.{ext}"


@pytest.fixture
def toolchain_copy(tmp_path: Path, tool: Callable[[str], str]) -> Path:
    """ARM_TOOLCHAIN root: bin/ holds real copies of the drivers (gcc finds its files
    relative to its own location), lib/ mirrors the installed lib dirs as symlinks."""
    tool("arm-none-eabi-gcc")
    real = find_toolchain()
    root = tmp_path / "toolchain"
    (root / "bin").mkdir(parents=True)
    for t in ("gcc", "g++", "ar", "objcopy", "size", "as", "ld"):
        src = real.bindir / f"arm-none-eabi-{t}"
        if src.exists():
            shutil.copy2(src, root / "bin" / src.name)
    prefix = real.bindir.parent
    (root / "lib" / "gcc").mkdir(parents=True)
    subprocess.run(["cp", "-as", str(prefix / "lib/gcc/arm-none-eabi"), str(root / "lib/gcc/")], check=True)
    subprocess.run(["cp", "-as", str(prefix / "lib/arm-none-eabi"), str(root / "lib/")], check=True)
    changed = True
    while changed:  # Debian links whole directories (include, lib -> /etc/alternatives/...)
        changed = False
        for dirpath, dirnames, _ in os.walk(root):
            for d in dirnames:
                link = Path(dirpath, d)
                if link.is_symlink():
                    target = link.resolve()
                    link.unlink()
                    subprocess.run(["cp", "-as", str(target), str(link)], check=True)
                    changed = True
    return root


def _own_copy(path: Path) -> Path:
    """Replace a symlink in the toolchain copy by a real copy of its file, to edit it.

    Refuses unless the link's directory is a real directory inside the copy: through a
    symlinked directory, unlinking would delete the INSTALLED file."""
    root = next(p for p in path.parents if p.name == "toolchain")
    parent = Path(os.path.realpath(path.parent))
    if parent != path.parent or not parent.is_relative_to(root) or not path.is_symlink():
        raise AssertionError(f"{path}: not a symlink in a real directory of the toolchain copy {root}")
    target = path.resolve(strict=True)
    path.unlink()
    shutil.copy2(target, path)
    return path


def _gcc_file(root: Path, name: str) -> Path:
    out = subprocess.run([str(root / "bin/arm-none-eabi-gcc"), *MFLAGS, f"-print-file-name={name}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(os.path.normpath(out))


def test_newlib_header_change_recompiles(fresh_checkout: Path, toolchain_copy: Path, tmp_path: Path) -> None:
    arg = f"ARM_TOOLCHAIN={toolchain_copy}"
    first = _build(fresh_checkout, arg)
    assert _build(fresh_checkout, arg) == set()
    header = _own_copy(toolchain_copy / "lib/arm-none-eabi/include/stdint.h")
    header.write_text(header.read_text() + "\n/* sparkflash trap: changed newlib header */\n")
    again = _build(fresh_checkout, arg)
    assert {c for c in first if c[0] in ("CC", "CXX")} <= again
    _same_as_clean_build(fresh_checkout, tmp_path, arg)


def test_libc_nano_member_change_relinks(fresh_checkout: Path, toolchain_copy: Path, tmp_path: Path) -> None:
    arg = f"ARM_TOOLCHAIN={toolchain_copy}"
    _build(fresh_checkout, arg)
    lib = _own_copy(_gcc_file(toolchain_copy, "libc_nano.a"))
    assert lib.is_relative_to(toolchain_copy)
    extra = tmp_path / "sparkflash_trap.o"
    src = tmp_path / "sparkflash_trap.c"
    src.write_text("int sparkflash_trap_member(void) { return 42; }\n")
    subprocess.run([str(toolchain_copy / "bin/arm-none-eabi-gcc"), *MFLAGS, "-c", str(src), "-o", str(extra)], check=True)
    subprocess.run([str(toolchain_copy / "bin/arm-none-eabi-ar"), "r", str(lib), str(extra)], check=True)
    assert ("LINK", "firmware.elf") in _build(fresh_checkout, arg)
    _same_as_clean_build(fresh_checkout, tmp_path, arg)


def test_specs_file_change_relinks(fresh_checkout: Path, toolchain_copy: Path, tmp_path: Path) -> None:
    arg = f"ARM_TOOLCHAIN={toolchain_copy}"
    _build(fresh_checkout, arg)
    specs = _own_copy(_gcc_file(toolchain_copy, "nano.specs"))
    assert specs.is_relative_to(toolchain_copy)
    specs.write_text(specs.read_text() + "\n")
    assert ("LINK", "firmware.elf") in _build(fresh_checkout, arg)


def test_compiler_proper_change_recompiles(fresh_checkout: Path, toolchain_copy: Path) -> None:
    """cc1 (not the gcc driver SCons runs) replaced: every C compile runs again."""
    arg = f"ARM_TOOLCHAIN={toolchain_copy}"
    first = _build(fresh_checkout, arg)
    cc1 = _own_copy(toolchain_copy / "lib/gcc/arm-none-eabi" / os.listdir(toolchain_copy / "lib/gcc/arm-none-eabi")[0] / "cc1")
    with open(cc1, "ab") as f:
        f.write(b"\0sparkflash trap")
    assert {c for c in first if c[0] == "CC"} <= _build(fresh_checkout, arg)


def test_new_header_shadowing_another_rebuilds(fresh_checkout: Path, tmp_path: Path) -> None:
    """A header added earlier on the include path (core-firmware/inc) than the one used so
    far (core-common-lib's hw_config.h), with the implicit-dependency cache on."""
    first = _build(fresh_checkout)
    assert ("CXX", "application.cpp") in first
    lib_header = fresh_checkout / "examples/core-common-lib/SPARK_Firmware_Driver/inc/hw_config.h"
    shadow = fresh_checkout / "examples/core-firmware/inc/hw_config.h"
    shadow.write_text(lib_header.read_text().replace("LED_GREEN = 2", "LED_GREEN = 6"))
    again = _build(fresh_checkout)
    assert {("CXX", "application.cpp"), ("CXX", "main.cpp"), ("LINK", "firmware.elf")} <= again
    _same_as_clean_build(fresh_checkout, tmp_path)
    assert _build(fresh_checkout) == set()


def test_header_rewritten_in_the_second_of_the_last_build_is_seen(fresh_checkout: Path, tmp_path: Path) -> None:
    """SCons records whole-second mtimes: a header recorded by a build that ended in second S
    and rewritten (same size) later in S must still be hashed again, not trusted. The
    timing is set with utime so the race happens every run: the header and the records
    of the second build both fall in S, the rewrite after them in S too."""
    header = fresh_checkout / "examples/core-common-lib/SPARK_Firmware_Driver/inc/hw_config.h"
    _build(fresh_checkout)
    second = int(time.time()) - 3
    os.utime(header, (second + 0.2, second + 0.2))
    assert ("CXX", "application.cpp") not in _build(fresh_checkout)  # same content: nothing to do, S recorded
    os.utime(fresh_checkout / f".sconsign_{HASH_FORMAT}.dblite", (second + 0.9, second + 0.9))
    header.write_text(header.read_text().replace("LED_GREEN = 2", "LED_GREEN = 6"))
    os.utime(header, (second + 0.5, second + 0.5))
    assert ("CXX", "application.cpp") in _build(fresh_checkout)
    _same_as_clean_build(fresh_checkout, tmp_path)
