"""SCons rebuilds exactly what changed: nothing on a no-op, one object + link on an edit,
the affected tree on a flag change; and two checkouts give byte-identical outputs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from sparkflash.firmware.toolchain import find_toolchain
from sparkflash.firmware.workspace import make_checkout, run_scons

_COMMANDS = re.compile(r"^(CC|CXX|AS|AR|LINK|BIN|HEX|SIZE)\s+(\S+)", re.MULTILINE)


def _ran(output: str) -> list[tuple[str, str]]:
    return [(m.group(1), Path(m.group(2)).name) for m in _COMMANDS.finditer(output)]


def _compiled_and_linked(output: str) -> list[tuple[str, str]]:
    return sorted(c for c in _ran(output) if c[0] in ("CC", "CXX", "AS", "AR", "LINK"))


def _build(checkout: Path, *args: str) -> str:
    r = run_scons(checkout, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_noop_runs_nothing(fresh_checkout: Path) -> None:
    _build(fresh_checkout, "-j2")
    out = _build(fresh_checkout, "--debug=explain")
    assert _ran(out) == [] and "rebuilding" not in out
    dry = _build(fresh_checkout, "-n")
    assert _ran(dry) == []


def test_one_edit_recompiles_one_object_and_relinks(fresh_checkout: Path) -> None:
    _build(fresh_checkout, "-j2")
    app = fresh_checkout / "examples/core-firmware/src/application.cpp"
    app.write_text(app.read_text().replace("LED_GREEN : LED_RED", "LED_BLUE : LED_RED"))
    ran = _ran(_build(fresh_checkout, "-j2"))
    assert ("CXX", "application.cpp") in ran
    assert [c for c in ran if c[0] in ("CC", "CXX", "AS", "AR")] == [("CXX", "application.cpp")]
    assert ("LINK", "firmware.elf") in ran and ("BIN", "firmware.bin") in ran


def test_flag_change_rebuilds_only_what_it_affects(fresh_checkout: Path) -> None:
    _build(fresh_checkout, "-j2")
    ran = _ran(_build(fresh_checkout, "SPARK_PRODUCT_ID=42"))  # a core-communication-lib define
    compiled = {c for c in ran if c[0] in ("CC", "CXX", "AS")}
    assert compiled == {("CC", "crc32.c")}
    assert _ran(_build(fresh_checkout, "SPARK_PRODUCT_ID=42")) == []


def test_toolchain_replaced_in_place_rebuilds_everything(fresh_checkout: Path, tmp_path: Path) -> None:
    """Same ARM_TOOLCHAIN path, different compiler (a package upgrade): nothing may be reused."""
    real = find_toolchain()
    bindir = tmp_path / "toolchain" / "bin"
    bindir.mkdir(parents=True)
    for t in ("gcc", "g++", "ar", "objcopy", "size"):
        wrapper = bindir / f"arm-none-eabi-{t}"
        wrapper.write_text(f'#!/bin/sh\nexec {real.tool(t)} "$@"\n')
        wrapper.chmod(0o755)
    toolchain = f"ARM_TOOLCHAIN={bindir.parent}"
    first = _compiled_and_linked(_build(fresh_checkout, "-j2", toolchain))
    assert _ran(_build(fresh_checkout, toolchain)) == []
    gcc = bindir / "arm-none-eabi-gcc"
    gcc.write_text(gcc.read_text() + "# upgraded\n")
    packaged = time.time() - 86400  # a package's files carry its build time, not the install's
    os.utime(gcc, (packaged, packaged))
    assert _compiled_and_linked(_build(fresh_checkout, "-j2", toolchain)) == first


def test_two_checkouts_give_identical_outputs(built_example: Path, tmp_path: Path) -> None:
    other = make_checkout(tmp_path / "elsewhere" / "checkout-b")
    _build(other, "-j1")
    for name in ("firmware.bin", "firmware.hex", "firmware.elf"):
        a = (built_example / "build/release" / name).read_bytes()
        b = (other / "build/release" / name).read_bytes()
        assert a == b, f"{name} differs between {built_example} and {other}"
    assert str(other).encode() not in (other / "build/release/firmware.elf").read_bytes()


def test_variants_and_app_build_side_by_side(built_example: Path, tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "variants")
    _build(checkout, "-j2", "VARIANT=debug", "APP=blink")
    out = checkout / "build/debug/applications/blink"
    assert (out / "firmware.bin").stat().st_size > 0
    assert (out / "firmware.bin").read_bytes() != (built_example / "build/release/firmware.bin").read_bytes()
    app_obj = out / "core-firmware/obj/applications/blink/application.o"
    assert app_obj.exists() and not (out / "core-firmware/obj/src/application.o").exists()


def test_new_source_and_build_mk_edit_are_seen(fresh_checkout: Path) -> None:
    """make's plan is cached between runs; a file a wildcard now matches, and a build.mk
    edit that keeps the old mtime, must reach the next build."""
    _build(fresh_checkout, "-j2")
    extra = fresh_checkout / "examples/core-firmware/src/extra.cpp"
    extra.write_text("int sparkflash_extra() { return 1; }\n")
    assert ("CXX", "extra.cpp") in _ran(_build(fresh_checkout))
    mk = fresh_checkout / "examples/core-firmware/src/build.mk"
    before = mk.stat()
    mk.write_text(mk.read_text() + "CPPFLAGS += -DSPARKFLASH_FROM_BUILD_MK=1\n")
    os.utime(mk, ns=(before.st_atime_ns, before.st_mtime_ns))
    ran = _ran(_build(fresh_checkout))
    assert {("CXX", "application.cpp"), ("CXX", "main.cpp"), ("CXX", "extra.cpp")} <= set(ran)
    assert ("CC", "crc32.c") not in ran
