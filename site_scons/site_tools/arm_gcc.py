"""SCons tool: the GNU Arm (arm-none-eabi) cross toolchain for the Cortex-M3.

Sets the compilers (found by sparkflash.build.toolchain: PATH or ARM_TOOLCHAIN=), adds
ElfToBin/ElfToHex (objcopy) and SizeCheck (table + board limit, fails by N bytes).
A missing toolchain stops SCons while reading the SConstruct with one line and exit 2.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import SCons.Action
import SCons.Builder
import SCons.Errors

from sparkflash.build.toolchain import find_toolchain
from sparkflash.errors import SparkflashError

_COMSTRS = {
    "CCCOMSTR": "CC     $SOURCE",
    "CXXCOMSTR": "CXX    $SOURCE",
    "ASPPCOMSTR": "AS     $SOURCE",
    "ARCOMSTR": "AR     $TARGET",
    "LINKCOMSTR": "LINK   $TARGET",
    "BINCOMSTR": "BIN    $TARGET",
    "HEXCOMSTR": "HEX    $TARGET",
}


def _size_check(target: list[Any], source: list[Any], env: Any) -> None:
    """Print the size table, write it to the target, fail if over the board's limits."""
    from sparkflash.boards import load_board  # imported here: a no-op build never pays for pyelftools
    from sparkflash.build.sizereport import check_fits, format_table, size_report

    try:
        report = size_report(str(source[0]), load_board(env["BOARD"]))
        table = format_table(report)
        sys.stdout.write(table + "\n")
        check_fits(report)
    except SparkflashError as e:
        raise SCons.Errors.BuildError(node=target[0], errstr=str(e), exitstatus=e.exit_code) from None
    with open(str(target[0]), "w") as f:
        f.write(table + "\n")


def generate(env: Any, **kw: Any) -> None:
    """Configure `env` for arm-none-eabi; idempotent."""
    try:
        tc = find_toolchain(env.get("ARM_TOOLCHAIN") or None, os.environ.get("PATH", ""))
    except SparkflashError as e:
        raise SCons.Errors.StopError(str(e)) from None
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
        )


def exists(env: Any) -> bool:
    try:
        find_toolchain(env.get("ARM_TOOLCHAIN") or None, os.environ.get("PATH", ""))
    except SparkflashError:
        return False
    return True
