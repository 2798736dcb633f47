"""SCons tool: build a core-firmware tree and its two sibling libraries like their makefiles.

`env.Tool('spark_core', arguments=ARGUMENTS)` reads the command-line variables (see
`spark_core_variables`), loads arm_gcc, and adds `env.SparkCoreFirmware()`, which returns
the nodes of build/<variant>/firmware.{elf,bin,hex,map,size}. Which sources and flags each
tree gets is data in sparkflash.firmware.coretree; this file only turns it into nodes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import SCons.Errors
import SCons.Script
from SCons.Variables import BoolVariable, EnumVariable, Variables

from sparkflash.boards import load_board
from sparkflash.firmware import PACKAGE_DIR
from sparkflash.firmware.coretree import (
    ASFLAGS,
    CODEGEN,
    LINK_LIBS,
    LINK_TAIL,
    BuildOptions,
    Component,
    load_tree,
)
from sparkflash.errors import InputError, SparkflashError

DEFAULT_TREE = "examples/core-firmware"


def spark_core_variables(arguments: dict[str, str]) -> Variables:
    """The command-line variables `scons NAME=value` understands."""
    v = Variables(None, arguments)
    v.Add("CORE_FIRMWARE", "core-firmware tree (siblings ../core-common-lib, ../core-communication-lib)", DEFAULT_TREE)
    v.Add("APP", "build applications/<APP>/ instead of src/application.cpp (as make APP=)", "")
    v.Add(EnumVariable("VARIANT", "release (RELEASE_BUILD) or debug (DEBUG_BUILD)", "release", allowed_values=("release", "debug")))
    v.Add("ARM_TOOLCHAIN", "directory holding bin/arm-none-eabi-gcc (default: PATH)", "")
    v.Add("BOARD", "board whose application flash and RAM limit the size", "spark-core")
    v.Add(BoolVariable("USE_SWD_JTAG", "define USE_SWD_JTAG (as make USE_SWD_JTAG=y)", False))
    v.Add("SPARK_PRODUCT_ID", "core-communication-lib product id", "65535")
    v.Add("PRODUCT_FIRMWARE_VERSION", "core-communication-lib product firmware version", "65535")
    v.Add(BoolVariable("NEWLIB_COMPAT", "GCC 12/newlib 3.3 defines and nosys specs (spec section 1)", True))
    v.Add(BoolVariable("IMPLICIT_CACHE", "reuse scanned #include lists of unchanged files", True))
    v.Add(BoolVariable("VERBOSE", "print full command lines", False))
    v.Add(BoolVariable("AGENT", "link the sparkflash device agent into the application (docs/device-agent.md)", False))
    return v


def _prefix_maps(env: Any, tree_roots: list[Path]) -> list[str]:
    """Map absolute build/source dirs to '.' so two checkouts give identical outputs."""
    dirs = {Path(env.Dir("#").abspath)} | {r.parent for r in tree_roots}
    ordered = sorted(dirs, key=lambda d: len(str(d)))
    # -fdebug-prefix-map too: gcc hands only that one to the assembler for .S files
    return [f"-f{kind}-prefix-map={d}=." for d in ordered for kind in ("file", "debug")]


def _component_env(env: Any, comp: Component, maps: list[str]) -> Any:
    """An environment compiling like that component's makefile.

    The -I/-D flags are spelled out once here (SPARK_PPFLAGS) instead of SCons expanding
    CPPPATH/CPPDEFINES for every command: that expansion was a third of a no-op's time.
    CPPPATH stays set for the #include scanner.
    """
    top = Path(env.Dir("#").abspath)
    includes = [os.path.relpath(p, top) if p.is_relative_to(top) else str(p) for p in comp.include_dirs]
    return env.Clone(
        CPPPATH=includes,
        SPARK_PPFLAGS=[f"-D{d}" for d in comp.defines] + [f"-I{p}" for p in includes],
        CCCOM="$CC -o $TARGET -c $CCFLAGS $SPARK_PPFLAGS $CFLAGS $SOURCES",
        CXXCOM="$CXX -o $TARGET -c $CCFLAGS $SPARK_PPFLAGS $CXXFLAGS $SOURCES",
        CCFLAGS=[*CODEGEN, *comp.cflags, *maps],
        CFLAGS=[],
        CXXFLAGS=list(comp.cxxflags),
        ASPPFLAGS=[*ASFLAGS, *maps],
        ASPPCOM="$CC $ASPPFLAGS -c -o $TARGET $SOURCES",  # the makefile passes no -I/-D to .S
    )


def _objects(cenv: Any, comp: Component, obj_dir: str) -> list[Any]:
    return [cenv.Object(f"{obj_dir}/{Path(s.rel).with_suffix('.o').as_posix()}", str(s.path))[0] for s in comp.sources]


def _integer(env: Any, name: str) -> int:
    try:
        return int(env[name], 0)
    except ValueError:
        raise InputError(f"{name}={env[name]}: not an integer") from None


def _firmware(env: Any) -> dict[str, Any]:
    """Nodes for the whole build; see the module docstring."""
    try:
        opts = BuildOptions(
            app=env["APP"] or None,
            debug=env["VARIANT"] == "debug",
            swd_jtag=bool(env["USE_SWD_JTAG"]),
            product_id=_integer(env, "SPARK_PRODUCT_ID"),
            product_version=_integer(env, "PRODUCT_FIRMWARE_VERSION"),
            newlib_compat=bool(env["NEWLIB_COMPAT"]),
        )
        tree = load_tree(env.Dir("#").Dir(env["CORE_FIRMWARE"]).abspath, opts)
        board = load_board(env["BOARD"])
    except SparkflashError as e:
        raise SCons.Errors.StopError(str(e)) from None
    variant = f"#build/{env['VARIANT']}"
    out = f"{variant}/applications/{opts.app}" if opts.app else variant
    maps = _prefix_maps(env, [c.root for c in tree.components])
    archives, built = [], []
    for comp in (tree.common, tree.communication):
        cenv = _component_env(env, comp, maps)
        lib_objs = _objects(cenv, comp, f"{variant}/{comp.name}/obj")
        archives.append(cenv.StaticLibrary(f"{variant}/{comp.name}/{comp.archive}", lib_objs)[0])
        built += lib_objs
    fenv = _component_env(env, tree.firmware, maps)
    fenv.Replace(
        LDSCRIPT=str(tree.linker_script),
        LINKFLAGS=[*tree.link_flags, *CODEGEN],
        # the archives come first in the .elf's sources, so SCons builds the libraries (and
        # runs ar) while the firmware objects compile, not on the way to the link; the link
        # line keeps the makefile's order: objects, then the archives
        LINKCOM=f"$LINK $LINKFLAGS ${{SOURCES[{len(archives)}:]}} ${{SOURCES[:{len(archives)}]}} -o $TARGET -T$LDSCRIPT "
        "$LINKTAIL -Wl,-Map,${TARGET.base}.map $LINKLIBS",
        LINKTAIL=list(LINK_TAIL),
        LINKLIBS=list(LINK_LIBS),
    )
    objs = _objects(fenv, tree.firmware, f"{out}/{tree.firmware.name}/obj")
    if env["AGENT"]:  # the device agent (docs/device-agent.md): its objects and setup/loop wraps
        from sparkflash.scons.sparkflash_agent import WRAP_FLAGS, agent_objects

        objs += agent_objects(fenv, out, tree.firmware.root)
        fenv.Append(LINKFLAGS=WRAP_FLAGS)
    elf = fenv.Program(f"{out}/firmware.elf", archives + objs)[0]
    fenv.Depends(elf, str(tree.linker_script))
    map_file = env.File(f"{out}/firmware.map")
    env.SideEffect(map_file, elf)
    env.Clean(elf, map_file)
    size = env.SizeCheck(f"{out}/firmware.size", elf, BOARD=env["BOARD"])[0]
    env.Depends(size, [str(PACKAGE_DIR / "sizereport.py"), str(board.source)])
    binary = env.ElfToBin(f"{out}/firmware.bin", elf)[0]
    hexfile = env.ElfToHex(f"{out}/firmware.hex", elf)[0]
    env.Depends([binary, hexfile], size)  # an image over the limit is never produced
    env.Depends([*built, *objs, *archives, elf, binary, hexfile], env["ARM_TOOL_FILES"])
    if env["AGENT"]:
        from sparkflash.scons.sparkflash_agent import agent_size_action

        env.Depends(binary, env.Command(f"{out}/agent.size", elf, agent_size_action))
    return {"elf": elf, "bin": binary, "hex": hexfile, "map": map_file, "size": size, "dir": env.Dir(out), "tree": tree}


def generate(env: Any, arguments: dict[str, str] | None = None, **kw: Any) -> None:
    """Read the variables, load arm_gcc, add env.SparkCoreFirmware()."""
    variables = spark_core_variables(arguments or {})
    variables.Update(env)  # other NAME=value arguments belong to the release/deploy tools
    env["SPARK_CORE_VARIABLES"] = variables
    env.Tool("arm_gcc")
    # "content", not "content-timestamp": SCons stores whole-second mtimes, so an .elf
    # relinked within the same second as the last build would look unchanged. max_drift=1
    # lets a file untouched for 1 s reuse its recorded hash (default: 2 days of rehashing).
    env.Decider("content")
    SCons.Script.SetOption("max_drift", 1)
    if env["IMPLICIT_CACHE"]:
        SCons.Script.SetOption("implicit_cache", 1)  # a no-op stays under 0.5 s (docs/build.md)
    env.AddMethod(_firmware, "SparkCoreFirmware")
    env.AddMethod(_check_arguments, "CheckArguments")


def _check_arguments(env: Any, arguments: dict[str, str]) -> None:
    """Refuse `scons NAME=value` that no tool reads: a typo must not be silently ignored.
    Called at the end of SConstruct, after every tool has added its names to
    SPARKFLASH_ARGUMENT_NAMES."""
    known = set(env["SPARK_CORE_VARIABLES"].keys()) | set(env.get("SPARKFLASH_ARGUMENT_NAMES", []))
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise SCons.Errors.StopError(
            f"unknown variable(s) {', '.join(unknown)}; known: {', '.join(sorted(known))} (see `scons -h`)")


def exists(env: Any) -> bool:
    return True
