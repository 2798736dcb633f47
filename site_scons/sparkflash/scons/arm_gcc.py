"""SCons tool: the GNU Arm (arm-none-eabi) cross toolchain for the Cortex-M3.

Sets the compilers (found by sparkflash.firmware.toolchain: PATH or ARM_TOOLCHAIN=), adds
ElfToBin/ElfToHex (objcopy) and SizeCheck (table + board limit, fails by N bytes).
A missing toolchain stops SCons while reading the SConstruct with one line and exit 2.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

import SCons.Action
import SCons.Builder
import SCons.Errors
import SCons.Script

from sparkflash.errors import SparkflashError
from sparkflash.firmware.toolchain import Toolchain, find_toolchain

_COMSTRS = {
    "CCCOMSTR": "CC     $SOURCE",
    "CXXCOMSTR": "CXX    $SOURCE",
    "ASPPCOMSTR": "AS     $SOURCE",
    "ARCOMSTR": "AR     $TARGET",
    "LINKCOMSTR": "LINK   $TARGET",
    "BINCOMSTR": "BIN    $TARGET",
    "HEXCOMSTR": "HEX    $TARGET",
}


#: every compile of the firmware trees: make's flags ($SPARK_ARGS). Not -pipe: one compile
#: alone ends 3-11 % sooner with it, but costs 3 % more CPU, and a clean -j2 build is all CPU
COMPILE_COM = "$CC $SPARK_ARGS -o $TARGET $SOURCES"


def _size_check(target: list[Any], source: list[Any], env: Any) -> None:
    """Print the size table, write it to the target; fail if over the board's limits or if
    the image has no valid vector table (then no .bin/.hex is made: they depend on it)."""
    from sparkflash.boards import (
        load_board,  # imported here: a no-op build never pays for pyelftools
    )
    from sparkflash.firmware.imagecheck import check_image
    from sparkflash.firmware.sizereport import check_fits, format_table, size_report

    try:
        board = load_board(env["BOARD"])
        report = size_report(str(source[0]), board)
        table = format_table(report)
        sys.stdout.write(table + "\n")
        check_fits(report)
        check_image(str(source[0]), board)
    except SparkflashError as e:
        raise SCons.Errors.BuildError(node=target[0], errstr=str(e), exitstatus=e.exit_code) from None
    with open(str(target[0]), "w") as f:
        f.write(table + "\n")


def _preload(names: tuple[str, ...]) -> None:
    for name in names:
        importlib.import_module(name)


def _preload_size_report(target: list[Any], source: list[Any], env: Any) -> None:
    """Import the size check's modules (pyelftools, YAML for the board: ~60 ms) while the
    linker runs, instead of after it: the check sits between the link and the .bin/.hex."""
    names = ("yaml", "sparkflash.firmware.sizereport", "sparkflash.firmware.imagecheck")
    threading.Thread(target=_preload, args=(names,), daemon=True).start()


def _size_emitter(target: list[Any], source: list[Any], env: Any) -> tuple[list[Any], list[Any]]:
    env.AddPreAction(source[0], SCons.Action.Action(_preload_size_report, None))
    return target, source


def generate(env: Any, **kw: Any) -> None:
    """Configure `env` for arm-none-eabi; idempotent."""
    try:
        tc = find_toolchain(env.get("ARM_TOOLCHAIN") or None, os.environ.get("PATH", ""))
    except SparkflashError as e:
        if not SCons.Script.GetOption("help"):
            raise SCons.Errors.StopError(str(e)) from None
        tc = Toolchain(Path("/nonexistent/toolchain/bin"))  # `scons -h` needs no compiler
    for tool in ("cc", "cxx", "as", "ar", "link"):
        env.Tool(tool)
    env.SetDefault(BOARD="spark-core")
    env.Replace(
        ARM_TOOLCHAIN_BIN=str(tc.bindir),
        CC=tc.tool("gcc"),
        CXX="$CC",  # the core-firmware makefiles compile C++ with the gcc driver too
        LINK=tc.tool("g++"),
        AR=tc.tool("ar"),
        ARFLAGS=["rc"],
        ARCOM="$AR $ARFLAGS $TARGET $SOURCES",
        RANLIBCOM="",
        OBJCOPY=tc.tool("objcopy"),
        SIZE=tc.tool("size"),
        OBJSUFFIX=".o",
        LIBPREFIX="lib",
        LIBSUFFIX=".a",
        PROGSUFFIX=".elf",
    )
    env.PrependENVPath("PATH", str(tc.bindir))
    # SCons' default (IMPLICIT_COMMAND_DEPENDENCIES=1) expands each command line a second
    # time only to find its program and depend on it: ~7 % of SCons' own CPU in a clean
    # build. The same edges, declared once: whoever builds with these tools depends its
    # targets on ARM_TOOL_FILES, so a toolchain replaced in place still rebuilds everything.
    env["IMPLICIT_COMMAND_DEPENDENCIES"] = 0
    env["ARM_TOOL_FILES"] = [tc.tool(t) for t in ("gcc", "g++", "ar", "objcopy")]
    if not env.get("VERBOSE"):
        env.SetDefault(**_COMSTRS)
    if "ElfToBin" not in env["BUILDERS"]:
        env["BUILDERS"]["ElfToBin"] = SCons.Builder.Builder(
            action=SCons.Action.Action("$OBJCOPY -O binary $SOURCE $TARGET", "$BINCOMSTR"), suffix=".bin", src_suffix=".elf"
        )
        env["BUILDERS"]["ElfToHex"] = SCons.Builder.Builder(
            action=SCons.Action.Action("$OBJCOPY -O ihex $SOURCE $TARGET", "$HEXCOMSTR"), suffix=".hex", src_suffix=".elf"
        )
        env["BUILDERS"]["SizeCheck"] = SCons.Builder.Builder(
            action=SCons.Action.Action(_size_check, "SIZE   $SOURCE (board $BOARD)", varlist=["BOARD"]),
            suffix=".size",
            src_suffix=".elf",
            emitter=_size_emitter,
        )


def exists(env: Any) -> bool:
    try:
        find_toolchain(env.get("ARM_TOOLCHAIN") or None, os.environ.get("PATH", ""))
    except SparkflashError:
        return False
    return True
