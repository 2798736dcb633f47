"""SCons tool: build a core-firmware tree and its two sibling libraries like their makefiles.

`env.Tool('spark_core', arguments=ARGUMENTS)` reads the command-line variables (see
`spark_core_variables`), loads arm_gcc, and adds `env.SparkCoreFirmware()`, which returns
the nodes of build/<variant>/firmware.{elf,bin,hex,map,size}. Which commands each tree
runs comes from its own makefiles (sparkflash.firmware.makeprobe via coretree); this file
turns them into nodes and adds what make lacks: the toolchain and include-directory
dependencies, the image check after the link, the cache and compiledb.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import SCons.Action
import SCons.Errors
import SCons.Node
import SCons.Script
from SCons.Variables import BoolVariable, EnumVariable, Variables

from sparkflash.boards import BOARD_DIR, board_file, load_board
from sparkflash.errors import InputError, SparkflashError
from sparkflash.firmware import PACKAGE_DIR
from sparkflash.firmware.coretree import (
    BuildOptions,
    Component,
    FirmwareTree,
    load_tree,
)
from sparkflash.scons import compile_ahead, stored_hashes, unchanged_records
from sparkflash.scons.arm_gcc import COMPILE_COM

DEFAULT_TREE = "examples/core-firmware"


def spark_core_variables(arguments: dict[str, str]) -> Variables:
    """The command-line variables `scons NAME=value` understands."""
    v = Variables(None, arguments)
    v.FormatVariableHelpText = _one_line_help
    v.Add("CORE_FIRMWARE", "core-firmware tree (siblings ../core-common-lib, ../core-communication-lib)", DEFAULT_TREE)
    v.Add("APP", "build applications/<APP>/ instead of src/application.cpp (as make APP=)", "")
    v.Add("TEST", "build tests/<TEST>/ with the unit-test library (as make TEST=)", "")
    v.Add(EnumVariable("VARIANT", "release (RELEASE_BUILD) or debug (make DEBUG_BUILD=y)", "release",
                       allowed_values=("release", "debug")))
    v.Add("ARM_TOOLCHAIN", "directory holding bin/arm-none-eabi-gcc (default: PATH)", "")
    v.Add("BOARD", "board whose application flash and RAM limit the size", "spark-core")
    v.Add(BoolVariable("USE_SWD_JTAG", "define USE_SWD_JTAG (as make USE_SWD_JTAG=y)", False))
    v.Add("SPARK_PRODUCT_ID", "core-communication-lib product id (default: the makefile's, 65535)", "")
    v.Add("PRODUCT_FIRMWARE_VERSION", "core-communication-lib product firmware version (default: the makefile's)", "")
    v.Add(BoolVariable("NEWLIB_COMPAT", "GCC 12/newlib 3.3 defines and nosys specs (docs/build.md)", True))
    v.Add(BoolVariable("IMPLICIT_CACHE", "reuse scanned #include lists of unchanged files", True))
    v.Add(BoolVariable("VERBOSE", "print full command lines", False))
    v.Add(BoolVariable("AGENT", "link the sparkflash device agent into the application (docs/device-agent.md)", False))
    v.Add("CFLAGS", "extra flags for every C and C++ compile, after the makefiles' own", "")
    v.Add("CPPDEFINES", "extra defines for every C and C++ compile (NAME or NAME=value, space separated)", "")
    v.Add("LINKFLAGS", "extra flags for the link, after the makefile's own", "")
    v.Add("CACHE_DIR", "SCons build cache: objects, .elf, .map, .bin, .hex and size report are reused from it", "")
    return v


_USER_FLAGS = ("CFLAGS", "CPPDEFINES", "LINKFLAGS")


def _one_line_help(env: Any, key: str, text: str, default: Any, actual: Any, aliases: Any = None) -> str:
    return f"  {key:<25} {text} [{actual}]\n"


def _words(env: Any, name: str) -> list[str]:
    import shlex

    try:
        return shlex.split(env[f"SPARK_USER_{name}"])
    except ValueError as e:
        raise InputError(f"{name}={env[f'SPARK_USER_{name}']}: {e}") from None


def _prefix_maps(env: Any, tree_roots: tuple[Path, ...]) -> list[str]:
    """Map the checkout to '.' and trees outside it to their path relative to the checkout,
    so two checkouts give identical outputs and gdb started in the checkout finds sources."""
    top = Path(env.Dir("#").abspath)
    dirs = {top: "."} | {r.parent: os.path.relpath(r.parent, top) for r in tree_roots if not r.is_relative_to(top)}
    ordered = sorted(dirs, key=lambda d: len(str(d)))  # gcc: the last matching map wins
    # macro + debug rather than -ffile-prefix-map: gcc ranks a file map above any macro
    # map, and the per-compile macro maps (__FILE__ as make spells it) must win. The
    # checkout's own map is left out of the signature ($( $)): its value is "." wherever
    # the checkout is, so a build cache serves another clone too.
    out: list[str] = []
    for d in ordered:
        pair = [f"-f{kind}-prefix-map={d}={dirs[d]}" for kind in ("macro", "debug")]
        out += ["$(", *pair, "$)"] if d == top else pair
    return out


def _relative_to_top(arg: str, top: str) -> str:
    """Paths inside the checkout, relative to it (SCons runs there): the command lines,
    and so the signatures and cache keys, do not depend on where the checkout is."""
    return arg.replace(top + "/", "").replace(top, ".") if top in arg else arg


def _include_dirs(args: tuple[str, ...]) -> list[str]:
    """The -I/-iquote/-isystem/-idirafter directories of a compile, in order, for the
    #include scanner (the command line spells them itself)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in _INCLUDE_OPTS and i + 1 < len(args):
            out.append(args[i + 1])
            i += 2
            continue
        for opt in _INCLUDE_OPTS:
            if a.startswith(opt) and len(a) > len(opt):
                out.append(a[len(opt):])
                break
        i += 1
    return out


_INCLUDE_OPTS = ("-iquote", "-isystem", "-idirafter", "-I")


def _escape(arg: str) -> str:
    return arg.replace("$", "$$")


def _objects(env: Any, comp: Component, obj_dir: str, prefix: tuple[str, ...], maps: list[str],
             extra: list[str]) -> dict[Path, Any]:
    """One Object per make compile; compiles with the same flags share one environment."""
    groups: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], Any] = {}
    top = env.Dir("#").abspath
    nodes: dict[Path, Any] = {}
    for c in comp.compiles:
        key = (c.args, c.macro_maps)
        cenv = groups.get(key)
        if cenv is None:
            cenv = groups[key] = env.Clone(
                CPPPATH=[_relative_to_top(d, top) for d in _include_dirs(c.args)],
                # last matching map wins: the macro maps (deeper dirs) after the general ones
                SPARK_ARGS=[*prefix, *(_escape(_relative_to_top(a, top)) for a in c.args),
                            *(extra if c.lang != "asm" else []), *maps,
                            *(f"-fmacro-prefix-map={_relative_to_top(d, top)}={rel}" for d, rel in c.macro_maps)],
                CCCOM=COMPILE_COM, CXXCOM=COMPILE_COM, ASPPCOM=COMPILE_COM, ASCOM=COMPILE_COM, SHCCCOM=COMPILE_COM,
            )
        nodes[c.output] = cenv.Object(f"{obj_dir}/{comp.object_path(c)}", str(c.source))[0]
    return nodes


def _integer(env: Any, name: str) -> str | None:
    if not env[name]:
        return None
    try:
        int(env[name], 0)
    except ValueError:
        raise InputError(f"{name}={env[name]}: not an integer") from None
    return str(env[name])


def _options(env: Any) -> BuildOptions:
    return BuildOptions(
        app=env["APP"] or None,
        test=env["TEST"] or None,
        debug=env["VARIANT"] == "debug",
        swd_jtag=bool(env["USE_SWD_JTAG"]),
        product_id=_integer(env, "SPARK_PRODUCT_ID"),
        product_version=_integer(env, "PRODUCT_FIRMWARE_VERSION"),
        newlib_compat=bool(env["NEWLIB_COMPAT"]),
    )


def _link_command(tree: FirmwareTree, objs: dict[Path, Any], archives: dict[Path, Any], map_file: Any,
                  extra: list[str], top: str, extra_objs: tuple[Any, ...] = ()) -> tuple[str, list[Any]]:
    """make's link line with our nodes in place of its objects, archives, map and output;
    `extra_objs` (the device agent's) follow make's last object, `extra` flags precede the output."""
    last_obj = max((i for i, item in enumerate(tree.link.args) if isinstance(item, tuple) and item[0] == "obj"), default=-1)
    lib_dirs = {a.parent: node.dir for a, node in archives.items()}
    words: list[str] = ["$LINK", *tree.link_prefix]
    scripts: list[Any] = []
    for i, item in enumerate(tree.link.args):
        if isinstance(item, str):
            words.append(_escape(_relative_to_top(item, top)))
            continue
        kind, path = item
        if kind == "obj":
            words.append(objs[path].path)
            if i == last_obj:
                words += [o.path for o in extra_objs]
        elif kind == "lib":
            words.append(archives[path].path if path in archives else str(path))
        elif kind == "libdir":
            words.append(f"-L{lib_dirs[path].path if path in lib_dirs else path}")
        elif kind == "map":
            words.append(f"-Wl,-Map,{map_file.path}")
        elif kind == "script":
            words.append(f"-T{_relative_to_top(str(path), top)}")
            scripts.append(str(path))
    words += [*extra, "--output", "$TARGET"]
    return " ".join(words), scripts


def _toolchain_node(env: Any, tree: FirmwareTree) -> Any:
    """One Value node standing for the content of every toolchain file that can shape an
    output (headers, libraries, specs, cc1/as/ld: sparkflash.firmware.toolinputs)."""
    from sparkflash.firmware.toolchain import Toolchain
    from sparkflash.firmware.toolinputs import content_digest, toolchain_inputs, toolchain_key

    mflags = tuple(dict.fromkeys(a for c in tree.firmware.compiles for a in c.args if a.startswith("-m")))
    cache = _cache_dir(env)
    pending: list[Callable[[], None]] = []
    tc = Toolchain(Path(env["ARM_TOOLCHAIN_BIN"]))
    files = toolchain_inputs(tc, mflags, cache, pending)
    digest = content_digest(files, cache / f"toolchain-content-{toolchain_key(tc, mflags)}.json", pending)
    _after_build(lambda: [w() for w in pending], only_if_ok=False)
    return env.Value(f"toolchain {digest}")


def _cache_dir(env: Any) -> Path:
    """The toolchain and make-plan records: per user (sparkflash.firmware.buildcache), so
    `rm -r build` and a fresh clone keep them; build/.sparkflash if that is off."""
    from sparkflash.firmware.buildcache import build_cache_dir

    if "SPARKFLASH_CACHE_DIR" not in env:
        env["SPARKFLASH_CACHE_DIR"] = str(build_cache_dir(Path(env.Dir("#build/.sparkflash").abspath)))
    return Path(env["SPARKFLASH_CACHE_DIR"])


def _after_build(action: Callable[[], object], only_if_ok: bool) -> None:
    """Run `action` at exit if the build phase ran (not after a stop while reading the
    SConstruct, not under -n); with only_if_ok, only if no target failed."""
    import atexit

    import SCons.Script.Main

    def run() -> None:
        failures = SCons.Script.GetBuildFailures()
        if SCons.Script.GetOption("no_exec") or (only_if_ok and failures):
            return
        if SCons.Script.Main.exit_status and not failures:
            return  # stopped before building (a refused variable, a missing tree)
        action()

    atexit.register(run)


def _rescan_if_include_dirs_changed(env: Any, tree: FirmwareTree) -> None:
    """With --implicit-cache SCons keeps each file's resolved #include list, so a header
    added earlier on the include path (shadowing one found before) would go unnoticed.
    Every include directory and source directory is stat'ed (an added, removed or renamed
    entry changes its mtime); if any changed since the last completed build, this run
    rescans all includes. The record is written only after a build without failures."""
    import json

    dirs = sorted({d for comp in tree.components for c in comp.compiles
                   for d in (*_include_dirs(c.args), str(c.source.parent))})
    sig: dict[str, list[int]] = {}
    for d in dirs:
        try:
            st = os.stat(d)
            sig[d] = [st.st_ino, st.st_mtime_ns]
        except OSError:
            sig[d] = []
    record = Path(env.Dir("#build/.sparkflash").abspath) / f"include-dirs-{env['VARIANT']}.json"
    try:
        old = json.loads(record.read_text())
    except (OSError, ValueError):
        old = None
    if old == sig:
        return
    # SetOption("implicit_deps_changed") is not applied after the SConscripts are read
    # (SCons 4 Main copies it to SCons.Node before); set what the scanner consults
    SCons.Node.implicit_deps_changed = True

    def save() -> None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(sig))

    _after_build(save, only_if_ok=True)


def _changed_sources_first(tree: FirmwareTree, nodes: dict[Path, Any]) -> list[Any]:
    """The objects of sources written since the last build saved its records (none after a
    clean start: make's order stands). Given to Default() before the images, SCons meets
    them first: an edited file's compile starts after its own ~100 headers are decided
    and runs while the other ~600 nodes are (-j2), instead of after all of them (0.05-0.15 s
    of a one-file edit). Only the order changes: every node is still decided."""
    since = stored_hashes.records_written()
    if not since:
        return []
    out: list[Any] = []
    for comp in tree.components:
        for c in comp.compiles:
            try:
                if c.output in nodes and int(os.stat(c.source).st_mtime) >= since:
                    out.append(nodes[c.output])
            except OSError:
                continue
    return out


def _help_placeholders(env: Any) -> dict[str, Any]:
    """`scons -h` must work without a toolchain or a tree: no graph, just the names."""
    out = env.Dir(f"#build/{env['VARIANT']}")
    return {k: out.File(f"firmware.{k}") for k in ("elf", "bin", "hex", "map", "size")} | {
        "dir": out, "tree": None, "objects": [], "first": []}


HELP_HEAD = """\
Spark Core firmware (sparkflash): builds a core-firmware tree and its two sibling
libraries with the commands their own makefiles run (docs/build.md).

Targets:
  (default)   build/<variant>/firmware.{elf,map,bin,hex,size}
  compiledb   compile_commands.json for editors and clang tools
  manifest, sign, publish, flash ...   release and deploy targets (below)

Variables (NAME=value; current value in brackets):
"""


def _firmware(env: Any) -> dict[str, Any]:
    """Nodes for the whole build; see the module docstring."""
    if SCons.Script.GetOption("help"):
        return _help_placeholders(env)
    try:
        opts = _options(env)
        pending: list[Callable[[], None]] = []
        tree = load_tree(env.Dir("#").Dir(env["CORE_FIRMWARE"]).abspath, opts, _cache_dir(env), pending)
        _after_build(lambda: [w() for w in pending], only_if_ok=False)
        board = board_file(env["BOARD"])  # read by the size check, after a link
        if board.parent != BOARD_DIR:  # a user's own board: refuse a malformed one before compiling
            load_board(board)
        extra = [_escape(w) for w in _words(env, "CFLAGS")] + [f"-D{_escape(d)}" for d in _words(env, "CPPDEFINES")]
        link_extra = [_escape(w) for w in _words(env, "LINKFLAGS")]
    except SparkflashError as e:
        raise SCons.Errors.StopError(str(e)) from None
    if env["CACHE_DIR"]:
        env.CacheDir(env.Dir("#").Dir(env["CACHE_DIR"]).abspath)
    variant = f"#build/{env['VARIANT']}"
    out = variant
    if opts.app:
        out = f"{variant}/applications/{opts.app}"
    elif opts.test:
        out = f"{variant}/tests/{opts.test}"
    maps = _prefix_maps(env, tree.roots)
    archives: dict[Path, Any] = {}
    built: list[Any] = []
    by_output: dict[Path, Any] = {}
    for comp in tree.libraries:
        lib_objs = _objects(env, comp, f"{variant}/{comp.name}", tree.compile_prefix, maps, extra)
        built += lib_objs.values()
        by_output |= lib_objs
        if comp.archive:
            members = [lib_objs[m] for m in comp.archive.members]
            archives[comp.archive.output] = env.StaticLibrary(f"{variant}/{comp.name}/{comp.archive.output.name}", members)[0]
    objs = _objects(env, tree.firmware, f"{out}/{tree.firmware.name}", tree.compile_prefix, maps, extra)
    by_output |= objs
    agent_objs: tuple[Any, ...] = ()
    if env["AGENT"]:  # the device agent (docs/device-agent.md): its objects and the setup/loop wraps
        from sparkflash.scons.sparkflash_agent import WRAP_FLAGS, agent_objects

        agent_objs = tuple(agent_objects(env, out, tree, maps))
        link_extra += WRAP_FLAGS
    map_file = env.File(f"{out}/firmware.map")
    command, scripts = _link_command(tree, objs, archives, map_file, link_extra, env.Dir("#").abspath, agent_objs)
    # the archives lead the .elf's sources, so SCons builds the libraries (and runs ar)
    # while the firmware objects compile; the command keeps make's order. The .map is a
    # target too, so a build cache restores it with the .elf.
    elf = env.Command([f"{out}/firmware.elf", map_file], [*archives.values(), *objs.values(), *agent_objs],
                      SCons.Action.Action(command, "$LINKCOMSTR"))[0]
    env.Depends(elf, scripts)
    size = env.SizeCheck(f"{out}/firmware.size", elf, BOARD=env["BOARD"])[0]
    env.Depends(size, [str(PACKAGE_DIR / "sizereport.py"), str(PACKAGE_DIR / "imagecheck.py"), str(board)])
    binary = env.ElfToBin(f"{out}/firmware.bin", elf)[0]
    hexfile = env.ElfToHex(f"{out}/firmware.hex", elf)[0]
    env.Depends([binary, hexfile], size)  # an image over the limit or without a vector table is never produced
    every = [*built, *objs.values(), *agent_objs, *archives.values(), elf, binary, hexfile]
    env.Depends(every, [*env["ARM_TOOL_FILES"], _toolchain_node(env, tree)])
    if env["AGENT"]:
        from sparkflash.scons.sparkflash_agent import agent_size_action

        env.Depends(binary, env.Command(f"{out}/agent.size", elf, agent_size_action))
    _rescan_if_include_dirs_changed(env, tree)
    _after_build(lambda: compile_ahead.record([*built, *objs.values(), *agent_objs], [elf]), only_if_ok=True)
    return {"elf": elf, "bin": binary, "hex": hexfile, "map": map_file, "size": size, "dir": env.Dir(out), "tree": tree,
            "objects": [*built, *objs.values()], "first": _changed_sources_first(tree, by_output)}


def generate(env: Any, arguments: dict[str, str] | None = None, **kw: Any) -> None:
    """Read the variables, load arm_gcc, add env.SparkCoreFirmware()."""
    # scons is a short-lived process: Python's cyclic collector walking SCons' ~10^5
    # objects (nodes, executors, .sconsign entries) again and again costs a no-op build
    # 10-20 ms and frees next to nothing before the process exits anyway. At exit the
    # interpreter would still walk them all once (~50 ms); frozen, they are left to the
    # OS (every file SCons and we write is closed before; nothing waits for a finalizer)
    gc.disable()
    import atexit

    atexit.register(gc.freeze)
    variables = spark_core_variables(arguments or {})
    variables.Update(env)  # other NAME=value arguments belong to the release/deploy tools
    env["SPARK_CORE_VARIABLES"] = variables
    for name in _USER_FLAGS:  # SCons' cc/link tools (loaded next) reset these names
        env[f"SPARK_USER_{name}"] = str(env[name])
    env.Tool("arm_gcc")
    env["SPAWN"] = compile_ahead.spawn  # serves a compile started before the SConstruct was read
    # "content", not "content-timestamp": SCons stores whole-second mtimes, so an .elf
    # relinked within the same second as the last build would look unchanged. Recorded
    # hashes are reused only where that cannot hide a write (sparkflash.scons.stored_hashes).
    env.Decider("content")
    stored_hashes.use_hash_format()  # site_init set it already, if the SConstruct's folder has ours
    stored_hashes.install()
    unchanged_records.install()
    if env["IMPLICIT_CACHE"]:
        SCons.Script.SetOption("implicit_cache", 1)  # a no-op stays under 0.5 s (docs/build.md)
    if "compiledb" in SCons.Script.COMMAND_LINE_TARGETS:  # its emitter costs every build ~20 ms
        env.Tool("compilation_db")
        env.Alias("compiledb", env.CompilationDatabase("#compile_commands.json"))
    SCons.Script.Help(HELP_HEAD + variables.GenerateHelpText(env, sort=False)
                      + "\nSCons' own options: scons -H\n", append=False)
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
