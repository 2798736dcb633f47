"""Every configuration the tree sets' makefiles offer, scons vs make, byte for byte (.bin
and .hex): APP=, TEST=, DEBUG_BUILD=y, USE_SWD_JTAG=y, SPARK_PRODUCT_ID=, and flags a
build.mk adds with CPPFLAGS += / LDFLAGS += (make applies them; so must we). Slow: two
clean builds per configuration (make does not track flags, so it is cleaned each time)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from firmware_peers import TREE_SETS

from sparkflash.firmware.workspace import make_checkout, run_make, run_scons

pytestmark = pytest.mark.slow

#: (id, make arguments, scons arguments, output path below build/ for make, for scons)
CONFIGS = [
    ("app", ["APP=tinker"], ["APP=tinker"], "applications/tinker/tinker", "release/applications/tinker/firmware"),
    ("test", ["TEST=core-v1/testapp1"], ["TEST=core-v1/testapp1"], "tests/core-v1/testapp1/testapp1",
     "release/tests/core-v1/testapp1/firmware"),
    ("debug", ["DEBUG_BUILD=y"], ["VARIANT=debug"], "core-firmware", "debug/firmware"),
    ("swd", ["USE_SWD_JTAG=y"], ["USE_SWD_JTAG=yes"], "core-firmware", "release/firmware"),
    ("product", ["SPARK_PRODUCT_ID=42", "PRODUCT_FIRMWARE_VERSION=7"],
     ["SPARK_PRODUCT_ID=42", "PRODUCT_FIRMWARE_VERSION=7"], "core-firmware", "release/firmware"),
    ("build_mk_flags", [], [], "core-firmware", "release/firmware"),
]
#: configurations the tree's own makefile fails to build with GCC 12 (libstdc++ 12 headers
#: break under the flasher_hal unit-test library), with the error both must report
MAKE_FAILS = {("flasher_hal", "test"): "'__count_if' is not a member of 'std'"}
#: appended to the firmware's src/build.mk for "build_mk_flags": both change the image
BUILD_MK_FLAGS = "\nCPPFLAGS += -fno-optimize-sibling-calls\nLDFLAGS += -u strtok\n"


@pytest.fixture(scope="module")
def matrix_trees(tree_sets: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    copies: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in copies:
            src = tree_sets(name).parent
            dest = tmp_path_factory.mktemp(f"matrix-{name}") / name
            shutil.copytree(src, dest, symlinks=True)
            copies[name] = dest / "core-firmware"
        return copies[name]

    return get


@pytest.mark.parametrize("name", TREE_SETS)
@pytest.mark.parametrize(("cid", "make_args", "scons_args", "make_out", "scons_out"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_configuration_byte_identical(name: str, cid: str, make_args: list[str], scons_args: list[str], make_out: str,
                                      scons_out: str, matrix_trees: Callable[[str], Path], tmp_path: Path,
                                      tool: Callable[[str], str]) -> None:
    tool("make")
    firmware = matrix_trees(name)
    if cid in ("app", "test") and not (firmware / ("applications" if cid == "app" else "tests")).is_dir():
        # this generation's makefile has no APP=/TEST=; scons must refuse, not build the default
        r = run_scons(make_checkout(tmp_path / "checkout"), f"CORE_FIRMWARE={firmware}", *scons_args)
        assert r.returncode == 2 and "no such" in r.stderr, r.stderr
        return
    build_mk = firmware / "src" / "build.mk"
    original = build_mk.read_text()
    if cid == "build_mk_flags":
        build_mk.write_text(original + BUILD_MK_FLAGS)
    try:
        assert run_make(firmware, "clean").returncode == 0
        made = run_make(firmware, "-j2", *make_args)
        checkout = make_checkout(tmp_path / "checkout")
        built = run_scons(checkout, "-j2", f"CORE_FIRMWARE={firmware}", *scons_args)
        if (name, cid) in MAKE_FAILS:
            # the tree's own make cannot build it with this toolchain: neither may scons
            assert made.returncode != 0 and MAKE_FAILS[(name, cid)] in made.stderr
            assert built.returncode != 0 and MAKE_FAILS[(name, cid)] in built.stderr
            assert not (checkout / "build" / f"{scons_out}.bin").exists()
            return
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
        for ext in ("bin", "hex"):
            theirs = (firmware / "build" / f"{make_out}.{ext}").read_bytes()
            ours = (checkout / "build" / f"{scons_out}.{ext}").read_bytes()
            assert ours == theirs, f"{name} {cid}: .{ext} differs ({len(ours)} vs make's {len(theirs)} B)"
    finally:
        build_mk.write_text(original)
