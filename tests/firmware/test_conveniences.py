"""Engineers' conveniences (issue #12 point 4): compile_commands.json, a build cache that
serves another clone (with .map and size report), extra flags, `scons -h` without a
toolchain, debug info whose paths resolve from the checkout for a tree outside it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from elftools.elf.elffile import ELFFile

from sparkflash.firmware.coretree import load_tree
from sparkflash.firmware.workspace import make_checkout, run_scons

OUTPUTS = ("firmware.elf", "firmware.map", "firmware.bin", "firmware.hex", "firmware.size")


def _ok(checkout: Path, *args: str) -> str:
    r = run_scons(checkout, "-j2", *args)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def test_compiledb_lists_every_compile(fresh_checkout: Path) -> None:
    _ok(fresh_checkout, "compiledb")
    db = json.loads((fresh_checkout / "compile_commands.json").read_text())
    tree = load_tree(fresh_checkout / "examples/core-firmware")
    expected = {str(c.source.relative_to(fresh_checkout)) for comp in tree.components for c in comp.compiles}
    assert {e["file"] for e in db} == expected and len(db) == len(expected)
    for e in db:
        assert e["directory"] == str(fresh_checkout) and e["command"].split()[0].endswith("arm-none-eabi-gcc")
        assert " -c " in e["command"] and e["file"] in e["command"]


def test_cache_serves_a_clone_elsewhere(fresh_checkout: Path, tmp_path: Path) -> None:
    cache = f"CACHE_DIR={tmp_path / 'cache'}"
    _ok(fresh_checkout, cache)
    clone = make_checkout(tmp_path / "other" / "place")
    out = _ok(clone, cache)
    assert not re.search(r"^(CC|CXX|AS|AR|LINK) ", out, re.MULTILINE), out
    for name in OUTPUTS:
        assert f"Retrieved `build/release/{name}' from cache" in out
        assert (clone / "build/release" / name).read_bytes() == (fresh_checkout / "build/release" / name).read_bytes()


def test_an_up_to_date_build_fills_the_cache_only_when_asked(fresh_checkout: Path, tmp_path: Path) -> None:
    """SCons stores only what it builds: the docs' --cache-populate fills a cache from a built checkout."""
    cache_dir = tmp_path / "cache"
    cache = f"CACHE_DIR={cache_dir}"
    _ok(fresh_checkout)
    _ok(fresh_checkout, cache)
    assert not list(cache_dir.glob("*/*"))  # SCons' config and CACHEDIR.TAG, no entry
    _ok(fresh_checkout, cache, "--cache-populate")
    out = _ok(make_checkout(tmp_path / "clone"), cache)
    assert not re.search(r"^(CC|CXX|AS|AR|LINK) ", out, re.MULTILINE), out
    assert all(f"Retrieved `build/release/{name}' from cache" in out for name in OUTPUTS), out


def test_extra_flags_reach_the_commands(fresh_checkout: Path) -> None:
    base = (_ok(fresh_checkout), (fresh_checkout / "build/release/firmware.bin").read_bytes())[1]
    out = _ok(fresh_checkout, "VERBOSE=1", "CPPDEFINES=SPARKFLASH_EXTRA=3 OTHER", "CFLAGS=-fno-inline",
              "LINKFLAGS=-u strtok")
    c_and_cxx = [line for line in out.splitlines() if " -c " in line]
    assert len(c_and_cxx) == 6 and not any(line.endswith(".S") for line in c_and_cxx)  # asm: make's ASFLAGS only
    assert all("-DSPARKFLASH_EXTRA=3 -DOTHER" in line and "-fno-inline" in line for line in c_and_cxx)
    link = next(line for line in out.splitlines() if "--output" in line)
    assert "-u strtok --output" in link
    assert (fresh_checkout / "build/release/firmware.bin").read_bytes() != base


def test_help_without_toolchain_shows_ours_first(fresh_checkout: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    r = run_scons(fresh_checkout, "-h", env={"PATH": str(empty)})
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.index("Targets:") < text.index("compiledb") < text.index("CORE_FIRMWARE") < text.index("CACHE_DIR")
    assert "--debug=TYPE" not in text and "scons -H" in text
    assert not (fresh_checkout / "build").exists()


def test_debug_paths_resolve_from_the_checkout(fresh_checkout: Path, tmp_path: Path) -> None:
    """gdb started in the checkout finds every compile unit's source, trees outside it too."""
    outside = tmp_path / "elsewhere" / "trees"
    shutil.copytree(fresh_checkout / "examples", outside)
    _ok(fresh_checkout, f"CORE_FIRMWARE={outside / 'core-firmware'}")
    with open(fresh_checkout / "build/release/firmware.elf", "rb") as f:
        elf = ELFFile(f)
        units = []
        for cu in elf.get_dwarf_info().iter_CUs():
            die = cu.get_top_DIE()
            name = die.attributes["DW_AT_name"].value.decode()
            comp_dir = die.attributes["DW_AT_comp_dir"].value.decode()
            if "newlib" not in comp_dir and "gcc" not in comp_dir:  # the toolchain's prebuilt libraries
                units.append((comp_dir, name))
    assert len(units) >= 7
    for comp_dir, name in units:
        assert not Path(comp_dir).is_absolute() and not Path(name).is_absolute(), (comp_dir, name)
        assert (fresh_checkout / comp_dir / name).is_file(), (comp_dir, name)
