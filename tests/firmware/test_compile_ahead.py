"""Compile ahead (sparkflash/scons/compile_ahead.py): an edited source compiles while SCons
reads the SConstruct, and SCons uses that compile only where it would have run the very
same command on the very same inputs. Each test checks the outputs against a clean build."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_stale_traps import _build, _same_as_clean_build, toolchain_copy  # noqa: F401 (a fixture)

from sparkflash.firmware.workspace import run_scons
from sparkflash.scons.compile_ahead import record_path

APP = "examples/core-firmware/src/application.cpp"
HEADER = "examples/core-firmware/inc/data_region.h"


def _record(checkout: Path, *args: str) -> Path:
    """The record of `_build(checkout, *args)` (run_scons: scons -Q -j2 ARGS)."""
    return checkout / record_path(["-Q", "-j2", *args])


def _last(checkout: Path, *args: str) -> dict[str, Any]:
    last: dict[str, Any] = json.loads(_record(checkout, *args).read_text())["last"]
    return last


def _object(checkout: Path, name: str) -> Path:
    found = list((checkout / "build/release").rglob(name))
    assert len(found) == 1, found
    return found[0]


def _edit(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_an_edited_source_is_compiled_ahead_and_used(fresh_checkout: Path, tmp_path: Path) -> None:
    _build(fresh_checkout)
    assert _last(fresh_checkout)["used"] == []  # a clean build: nothing recorded to start from
    _edit(fresh_checkout / APP, "\nint sparkflash_ahead_1 = 1;\n")
    ran = _build(fresh_checkout)
    assert ("CXX", "application.cpp") in ran  # SCons decided to compile it, and printed it
    assert _last(fresh_checkout)["used"] == [str(_object(fresh_checkout, "application.o"))]
    _same_as_clean_build(fresh_checkout, tmp_path)
    assert _build(fresh_checkout) == set()  # what SCons recorded is what is on disk


def test_a_different_command_is_never_used(fresh_checkout: Path, tmp_path: Path) -> None:
    """The record says application.o is compiled with an extra define; SCons' own command
    lacks it, so the early compile (which defines a symbol) must be left unused."""
    _build(fresh_checkout)
    record = _record(fresh_checkout)
    data = json.loads(record.read_text())
    entry = next(o for o in data["objects"] if o["target"].endswith("/application.o"))
    entry["args"].insert(1, "-DSPARKFLASH_AHEAD_WRONG=1")
    record.write_text(json.dumps(data))
    _edit(fresh_checkout / APP,
          "\n#ifdef SPARKFLASH_AHEAD_WRONG\nint sparkflash_wrong = 1;\n#endif\nint sparkflash_ahead_2 = 2;\n")
    _build(fresh_checkout)
    last = _last(fresh_checkout)
    assert last["used"] == [] and last["unused"] == [str(_object(fresh_checkout, "application.o"))]
    symbols = subprocess.run(["arm-none-eabi-nm", str(_object(fresh_checkout, "application.o"))],
                             capture_output=True, text=True, check=True).stdout
    assert "sparkflash_ahead_2" in symbols and "sparkflash_wrong" not in symbols
    _same_as_clean_build(fresh_checkout, tmp_path)


def test_a_header_changed_during_the_early_compile_drops_it(fresh_checkout: Path, tmp_path: Path,
                                                           toolchain_copy: Path) -> None:  # noqa: F811
    """An editor saves a header while the early compile runs (after the compiler has read
    it): the early object is stale, so SCons must compile again. A wrapper around the real
    gcc of a toolchain copy does the save, once, when a flag file exists."""
    gcc = toolchain_copy / "bin/arm-none-eabi-gcc"
    gcc.rename(gcc.with_name("arm-none-eabi-gcc.real"))
    flag, header = tmp_path / "save-header-once", fresh_checkout / HEADER
    gcc.write_text(f'#!/bin/sh\n"$0.real" "$@"\nrc=$?\ncase "$*" in *application.cpp*)\n'
                   f'  if [ -e "{flag}" ]; then rm -f "{flag}"; printf "\\n#define SPARKFLASH_SAVED 1\\n" >> "{header}"; fi;;\n'
                   'esac\nexit $rc\n')
    gcc.chmod(0o755)
    arg = f"ARM_TOOLCHAIN={toolchain_copy}"
    _build(fresh_checkout, arg)
    _edit(fresh_checkout / APP, "\n#ifdef SPARKFLASH_SAVED\nint sparkflash_saved = 1;\n#endif\n")
    flag.write_text("")
    _build(fresh_checkout, arg)
    assert not flag.exists()  # the early compile ran the wrapper
    app = str(_object(fresh_checkout, "application.o"))
    last = _last(fresh_checkout, arg)
    assert app not in last["used"] and "changed during the early compile" in last["dropped"][app]
    symbols = subprocess.run(["arm-none-eabi-nm", app], capture_output=True, text=True, check=True).stdout
    assert "sparkflash_saved" in symbols  # compiled again, with the saved header
    _build(fresh_checkout, arg)  # SCons read the header before the save: it catches up, as without us
    assert _build(fresh_checkout, arg) == set()
    _same_as_clean_build(fresh_checkout, tmp_path, arg)


def test_a_failing_early_compile_reports_its_error_once(fresh_checkout: Path) -> None:
    _build(fresh_checkout)
    _edit(fresh_checkout / APP, "\nint sparkflash_broken = ;\n")
    r = run_scons(fresh_checkout, "-j2")
    assert r.returncode != 0
    assert (r.stdout + r.stderr).count("expected primary-expression") == 1
    _edit(fresh_checkout / APP, "\n")
    (fresh_checkout / APP).write_text((fresh_checkout / APP).read_text().replace("int sparkflash_broken = ;", ""))
    assert ("CXX", "application.cpp") in _build(fresh_checkout)


def test_it_can_be_turned_off(fresh_checkout: Path) -> None:
    r = run_scons(fresh_checkout, "-j2", env={"SPARKFLASH_COMPILE_AHEAD": "off"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert not _record(fresh_checkout).exists()
    _edit(fresh_checkout / APP, "\nint sparkflash_ahead_3 = 3;\n")
    _build(fresh_checkout)  # on again: what it compiles is recorded
    targets = [o["target"] for o in json.loads(_record(fresh_checkout).read_text())["objects"]]
    assert targets == [str(_object(fresh_checkout, "application.o"))]


def test_a_real_tree_edit_is_compiled_ahead(tree_sets: Callable[[str], Path], tmp_path: Path,
                                            fresh_checkout: Path) -> None:
    """spark_11 from ../shared/peers: the edit the benchmark makes (src/spark_wiring.cpp),
    served by the early compile; the image equals a clean build's of the edited tree."""
    trees = tmp_path / "trees"
    shutil.copytree(tree_sets("spark_11").parent, trees, symlinks=True)
    arg = f"CORE_FIRMWARE={trees / 'core-firmware'}"
    _build(fresh_checkout, arg)
    _edit(trees / "core-firmware/src/spark_wiring.cpp", "\nint sparkflash_ahead_real = 1;\n")
    assert ("CXX", "spark_wiring.cpp") in _build(fresh_checkout, arg)
    assert _last(fresh_checkout, arg)["used"] == [str(_object(fresh_checkout, "spark_wiring.o"))]
    image = (fresh_checkout / "build/release/firmware.bin").read_bytes()
    shutil.rmtree(fresh_checkout / "build")
    (fresh_checkout / ".sconsign.dblite").unlink()
    _build(fresh_checkout, arg)
    assert (fresh_checkout / "build/release/firmware.bin").read_bytes() == image
