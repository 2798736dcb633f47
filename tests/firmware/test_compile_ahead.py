"""Compile ahead (sparkflash/scons/compile_ahead.py, early_compile.py, launch.py): an edited
source compiles, and the firmware links, while SCons loads and reads the SConstruct; SCons
uses an early run only where it would have run the very same command on the very same
inputs. Each test checks the outputs against a clean build or SCons' own link."""

from __future__ import annotations

import marshal
import os
import pickle
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import SCons.Util
from test_stale_traps import _build, _ran, _same_as_clean_build, toolchain_copy  # noqa: F401 (a fixture)

from sparkflash.firmware.workspace import clean_scons, run_scons
from sparkflash.scons.early_compile import record_path
from sparkflash.scons.stored_hashes import HASH_FORMAT

APP = "examples/core-firmware/src/application.cpp"
HEADER = "examples/core-firmware/inc/data_region.h"


def _record(checkout: Path, *args: str) -> Path:
    """The record of `_build(checkout, *args)` (run_scons: scons -Q -j2 ARGS), which the
    scons process finds in the same SPARKFLASH_HOME as this one (tests/conftest.py)."""
    return Path(record_path(["-Q", "-j2", *args], str(checkout)))


def _read(checkout: Path, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = marshal.loads(_record(checkout, *args).read_bytes())
    return data


def _last(checkout: Path, *args: str) -> dict[str, Any]:
    last: dict[str, Any] = _read(checkout, *args)["last"]
    return last


ELF = "build/release/firmware.elf"
OUTPUTS = ("firmware.elf", "firmware.map", "firmware.bin", "firmware.hex")


def _same_as_scons_link(checkout: Path, *args: str) -> None:
    """The .elf, .map and images equal those of SCons' own link of the same objects (the
    .elf removed, then a build with compile ahead off)."""
    out = checkout / "build/release"
    served = {name: (out / name).read_bytes() for name in OUTPUTS}
    (out / "firmware.elf").unlink()
    r = run_scons(checkout, "-j2", *args, env={"SPARKFLASH_COMPILE_AHEAD": "off"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "LINK" in r.stdout
    for name in OUTPUTS:
        assert (out / name).read_bytes() == served[name], f"{name} differs from SCons' own link"


def _recorded_hash(checkout: Path, path: str, algorithm: str = HASH_FORMAT) -> str:
    """The content hash SCons' .sconsign holds for `path` (relative to the checkout)."""
    import SCons.dblite
    import SCons.SConsign  # noqa: F401 (the class the entries were pickled as)

    folder, name = os.path.split(path)
    records = SCons.dblite.open(str(checkout / f".sconsign_{algorithm}"), "r")
    csig: str = pickle.loads(records[folder])[name].ninfo.csig
    return csig


def _hashes_are_the_files(checkout: Path, algorithm: str = HASH_FORMAT) -> None:
    """What SCons recorded for the served .elf and .map (hashed ahead, beside SCons) is
    the hash of what is on disk."""
    for path in (ELF, "build/release/firmware.map"):
        on_disk = SCons.Util.hash_file_signature(str(checkout / path), hash_format=algorithm)
        assert _recorded_hash(checkout, path, algorithm) == on_disk, path


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
    last = _last(fresh_checkout)
    assert last["used"] == [str(_object(fresh_checkout, "application.o")), str(fresh_checkout / ELF)]
    assert last["from"] == "site_init" and last["dropped"] == {}
    _hashes_are_the_files(fresh_checkout)
    _same_as_clean_build(fresh_checkout, tmp_path)
    assert _build(fresh_checkout) == set()  # what SCons recorded is what is on disk
    _same_as_scons_link(fresh_checkout)


def test_hashes_are_sha256_unless_the_command_line_names_another(fresh_checkout: Path) -> None:
    """SHA-256 by default; with --hash-format=md5, MD5 throughout, the early link's hashes
    of the .elf and .map included."""
    _build(fresh_checkout)
    assert sorted(p.name for p in fresh_checkout.glob(".sconsign*")) == [f".sconsign_{HASH_FORMAT}.dblite"]
    assert len(_recorded_hash(fresh_checkout, ELF)) == 64
    _build(fresh_checkout, "--hash-format=md5")
    _edit(fresh_checkout / APP, "\nint sparkflash_md5 = 1;\n")
    assert ("CXX", "application.cpp") in _build(fresh_checkout, "--hash-format=md5")
    assert str(fresh_checkout / ELF) in _last(fresh_checkout, "--hash-format=md5")["used"]
    _hashes_are_the_files(fresh_checkout, "md5")
    assert len(_recorded_hash(fresh_checkout, ELF, "md5")) == 32
    assert _build(fresh_checkout, "--hash-format=md5") == set()


def test_a_different_command_is_never_used(fresh_checkout: Path, tmp_path: Path) -> None:
    """The record says application.o is compiled with an extra define; SCons' own command
    lacks it, so the early compile (which defines a symbol) must be left unused."""
    _build(fresh_checkout)
    record = _record(fresh_checkout)
    data = _read(fresh_checkout)
    entry = next(o for o in data["objects"] if o["target"].endswith("/application.o"))
    entry["args"].insert(1, "-DSPARKFLASH_AHEAD_WRONG=1")
    entry["out"] += 1
    record.write_bytes(marshal.dumps(data))
    _edit(fresh_checkout / APP,
          "\n#ifdef SPARKFLASH_AHEAD_WRONG\nint sparkflash_wrong = 1;\n#endif\nint sparkflash_ahead_2 = 2;\n")
    _build(fresh_checkout)
    last = _last(fresh_checkout)
    assert last["used"] == [] and last["unused"] == [str(_object(fresh_checkout, "application.o"))]
    assert "not the object the early link read" in last["dropped"][str(fresh_checkout / ELF)]
    symbols = subprocess.run(["arm-none-eabi-nm", str(_object(fresh_checkout, "application.o"))],
                             capture_output=True, text=True, check=True).stdout
    assert "sparkflash_ahead_2" in symbols and "sparkflash_wrong" not in symbols
    _same_as_clean_build(fresh_checkout, tmp_path)


def _build_saving_during(checkout: Path, toolchain: Path, driver: str, when: str, path: Path, text: str,
                         edit: str) -> tuple[str, dict[str, Any]]:
    """Edit APP and build, a wrapper around `driver` of the toolchain copy appending `text`
    (printf format) to `path` once, right after its run whose arguments contain `when`; the
    build's argument and the record's `last`."""
    real = toolchain / "bin" / driver
    real.rename(real.with_name(driver + ".real"))
    flag = toolchain.parent / f"{driver}.save-once"  # beside the toolchain copy, not in it
    real.write_text(f'#!/bin/sh\n"$0.real" "$@"\nrc=$?\ncase "$*" in *{when}*)\n'
                    f'  if [ -e "{flag}" ]; then rm -f "{flag}"; printf "{text}" >> "{path}"; fi;;\n'
                    'esac\nexit $rc\n')
    real.chmod(0o755)
    arg = f"ARM_TOOLCHAIN={toolchain}"
    _build(checkout, arg)
    _edit(checkout / APP, edit)
    flag.write_text("")
    _build(checkout, arg)
    assert not flag.exists()  # the early run ran the wrapper
    return arg, _last(checkout, arg)


def test_a_header_changed_during_the_early_compile_drops_it(fresh_checkout: Path, tmp_path: Path,
                                                           toolchain_copy: Path) -> None:  # noqa: F811
    """An editor saves a header while the early compile runs (after the compiler has read
    it): the early object is stale, so SCons must compile again. A wrapper around the real
    gcc of a toolchain copy does the save, once, when a flag file exists."""
    arg, last = _build_saving_during(fresh_checkout, toolchain_copy, "arm-none-eabi-gcc", "application.cpp",
                                     fresh_checkout / HEADER, "\\n#define SPARKFLASH_SAVED 1\\n",
                                     "\n#ifdef SPARKFLASH_SAVED\nint sparkflash_saved = 1;\n#endif\n")
    app = str(_object(fresh_checkout, "application.o"))
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
    data = _read(fresh_checkout)
    assert [o["target"] for o in data["objects"]] == [str(_object(fresh_checkout, "application.o"))]
    assert [k["target"] for k in data["links"]] == [str(fresh_checkout / ELF)]


def test_a_real_tree_edit_is_compiled_ahead(tree_sets: Callable[[str], Path], tmp_path: Path,
                                            fresh_checkout: Path) -> None:
    """spark_11 from ../shared/peers: the edit the benchmark makes (src/spark_wiring.cpp),
    served by the early compile and link; the outputs equal SCons' own link, and the image a
    clean build's of the edited tree."""
    trees = tmp_path / "trees"
    shutil.copytree(tree_sets("spark_11").parent, trees, symlinks=True)
    arg = f"CORE_FIRMWARE={trees / 'core-firmware'}"
    _build(fresh_checkout, arg)
    _edit(trees / "core-firmware/src/spark_wiring.cpp", "\nint sparkflash_ahead_real = 1;\n")
    assert ("CXX", "spark_wiring.cpp") in _build(fresh_checkout, arg)
    assert _last(fresh_checkout, arg)["used"] == [str(_object(fresh_checkout, "spark_wiring.o")), str(fresh_checkout / ELF)]
    _same_as_scons_link(fresh_checkout, arg)
    image = (fresh_checkout / "build/release/firmware.bin").read_bytes()
    _clean(fresh_checkout)
    _build(fresh_checkout, arg)
    assert (fresh_checkout / "build/release/firmware.bin").read_bytes() == image
    last = _last(fresh_checkout, arg)  # the clean build's first two compiles ran while SCons loaded
    assert len(last["used"]) == 2 and last["dropped"] == {} and last["unused"] == [], last


def _clean(checkout: Path) -> None:
    """What the benchmark's clean does (and `make clean`: the objects go)."""
    assert (checkout / f".sconsign_{HASH_FORMAT}.dblite").is_file()
    clean_scons(checkout)


def _launch(checkout: Path, *args: str) -> set[tuple[str, str]]:
    r = run_scons(checkout, "-j2", *args, launcher=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return _ran(r.stdout)


def test_sparkflash_scons_starts_the_compile_before_scons(fresh_checkout: Path, tmp_path: Path) -> None:
    """sparkflash-scons starts the compile itself and hands it to the SCons it becomes."""
    _launch(fresh_checkout)
    _edit(fresh_checkout / APP, "\nint sparkflash_ahead_4 = 4;\n")
    assert ("CXX", "application.cpp") in _launch(fresh_checkout)
    last = _last(fresh_checkout)
    assert last["from"] == "sparkflash-scons"
    assert last["used"] == [str(_object(fresh_checkout, "application.o")), str(fresh_checkout / ELF)]
    _hashes_are_the_files(fresh_checkout)
    assert _launch(fresh_checkout) == set()
    _same_as_clean_build(fresh_checkout, tmp_path)
    _same_as_scons_link(fresh_checkout)


def test_after_a_clean_the_first_compiles_start_before_scons(fresh_checkout: Path, tmp_path: Path) -> None:
    """The record outlives `rm -r build .sconsign*`: sparkflash-scons starts the first
    -j2 compiles of the clean build, SCons meets them first and uses them."""
    _launch(fresh_checkout)
    image = (fresh_checkout / "build/release/firmware.bin").read_bytes()
    _clean(fresh_checkout)
    ran = _launch(fresh_checkout)
    last = _last(fresh_checkout)
    assert last["from"] == "sparkflash-scons" and last["dropped"] == {} and last["unused"] == [], last
    first = [o["target"] for o in _read(fresh_checkout)["objects"][:2]]
    assert sorted(last["used"]) == sorted(first) and all(Path(t).is_file() for t in first)
    assert len(ran) > 2  # SCons compiled the others itself
    assert (fresh_checkout / "build/release/firmware.bin").read_bytes() == image
    assert _launch(fresh_checkout) == set()
    _same_as_clean_build(fresh_checkout, tmp_path)


def test_sparkflash_scons_is_scons(fresh_checkout: Path) -> None:
    """Same arguments, output and exit status as scons: a failing build fails alike, and
    SCons' own options pass through."""
    _launch(fresh_checkout)
    _edit(fresh_checkout / APP, "\nint sparkflash_broken = ;\n")
    ours, theirs = run_scons(fresh_checkout, "-j2", launcher=True), run_scons(fresh_checkout, "-j2")
    assert ours.returncode == theirs.returncode == 2
    assert (ours.stdout + ours.stderr).count("expected primary-expression") == 1
    assert "application.o] Error 1" in ours.stderr
    r = run_scons(fresh_checkout, "-C", str(fresh_checkout), "-n", launcher=True)
    assert r.returncode == 0 and "CXX" in r.stdout  # -n: nothing runs, nothing starts early


def test_sparkflash_scons_skips_the_teardown_only_when_nothing_is_lost(tmp_path: Path) -> None:
    """It leaves without freeing the interpreter only when no file it opened is still open
    for writing: a file object an SConstruct left open gets its buffer written; output and
    exit status are scons' own either way."""
    (tmp_path / "SConstruct").write_text(
        "import sys\nsys.stdout.write('x' * 200000 + 'end\\n')\n"
        "if ARGUMENTS.get('OPEN'):\n    sys.kept = open('left-open.txt', 'w')\n    sys.kept.write('kept')\n"
        "Exit(int(ARGUMENTS.get('STATUS', '0')))\n")
    for args, status in ((["OPEN=1"], 0), (["STATUS=3"], 3), ([], 0)):
        r = run_scons(tmp_path, *args, launcher=True)
        assert r.returncode == status, r.stderr
        assert r.stdout == "x" * 200000 + "end\n"
    assert (tmp_path / "left-open.txt").read_text() == "kept"


def test_a_linker_script_saved_during_the_early_link_drops_it(fresh_checkout: Path, tmp_path: Path,
                                                              toolchain_copy: Path) -> None:  # noqa: F811
    """The linker script changes while the early link runs: SCons links again itself. A
    wrapper around the g++ driver of a toolchain copy does the save, once."""
    script = next((fresh_checkout / "examples/core-firmware/linker").glob("*.ld"))
    arg, last = _build_saving_during(fresh_checkout, toolchain_copy, "arm-none-eabi-g++", "firmware.elf", script,
                                     "\\n/* saved */\\n", "\nint sparkflash_ahead_5 = 5;\n")
    elf = str(fresh_checkout / ELF)
    assert last["used"] == [str(_object(fresh_checkout, "application.o"))]
    assert "changed during the early link" in last["dropped"][elf]
    _build(fresh_checkout, arg)  # SCons hashed the script before the save: it catches up, as without us
    assert _build(fresh_checkout, arg) == set()
    _same_as_clean_build(fresh_checkout, tmp_path, arg)
