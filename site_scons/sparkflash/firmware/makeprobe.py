"""Read a core-firmware tree set the way its makefiles do: ask make itself.

Three generations of these makefiles (spark_11, flasher, flasher_hal) differ in where
their build.mk files live, which include directories they add, how they reach the
library sub-makes and what a build.mk may add (CPPFLAGS +=, LDFLAGS +=). Rather than
re-implementing make, `make -n -B -w` prints every command a clean build runs; its
recursive `$(MAKE)` lines run a probe (submake_probe.sh) that keeps -n and adds -w, so
the libraries' commands come with the directory they run in. This module parses those
command lines into compiles, archives and one link, with every path made absolute, so
SCons runs the same commands (same flags, same order) with its own outputs.

Only the tools' command lines are taken; the makefiles' echo/mkdir lines are skipped. A
link input that no printed command produces is an error naming it, so a recipe this
parser cannot follow never turns into a silently smaller image.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sparkflash.errors import InputError
from sparkflash.firmware.buildcache import prune

__all__ = ["PROBE_SCRIPT", "Archive", "Compile", "Link", "MakePlan", "probe"]

PROBE_SCRIPT = Path(__file__).resolve().parent / "submake_probe.sh"
_DIR = re.compile(r"^\S*make(?:\[\d+\])?: (Entering|Leaving) directory [`'](.*)'$")
#: Options followed by a separate argument (gcc/g++ driver).
_WITH_ARG = {"-o", "-MF", "-MT", "-MQ", "-x", "-include", "-imacros", "-I", "-D", "-U", "-isystem", "-iquote",
             "-idirafter", "-L", "-T", "-u", "-Xlinker", "-Xassembler", "-Xpreprocessor", "-l", "-e", "--output"}
#: Options whose argument is a path (relative to the make's directory).
_PATH_ARG = {"-I", "-isystem", "-iquote", "-idirafter", "-include", "-imacros", "-L", "-T", "-MF"}
_SOURCE_SUFFIXES = {".c": "c", ".cpp": "cxx", ".cc": "cxx", ".cxx": "cxx", ".S": "asm", ".s": "asm", ".sx": "asm"}
_DEP_FLAGS = {"-MD", "-MMD", "-MP"}


@dataclass(frozen=True)
class Compile:
    """One `gcc ... -c -o OBJ SRC`: `args` are the flags in make's order (paths absolute,
    without -o, the source and make's own -MD/-MP/-MF dependency files)."""

    cwd: Path
    source: Path
    output: Path
    lang: str
    args: tuple[str, ...]
    #: (absolute dir, make's spelling) for each ../ depth its relative paths use: what
    #: -fmacro-prefix-map needs so __FILE__ reads as under make (the unit tests print it)
    macro_maps: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Archive:
    """`ar FLAGS LIB MEMBERS`: members in make's order (the archive's member order)."""

    cwd: Path
    output: Path
    members: tuple[Path, ...]


@dataclass(frozen=True)
class Link:
    """The link: `args` in make's order, each either a flag or one of the markers below,
    which the SCons tool replaces by its own nodes."""

    cwd: Path
    output: Path
    args: tuple[str | tuple[str, Path], ...]  # ("obj"|"lib"|"libdir"|"map"|"script", path)


@dataclass
class MakePlan:
    """Everything `make` would run for a clean build, in its order."""

    compiles: list[Compile] = field(default_factory=list)
    archives: list[Archive] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    commands: int = 0


def _abs(cwd: Path, p: str) -> Path:
    return Path(os.path.normpath(cwd / p))


def _split_option(tok: str) -> tuple[str, str] | None:
    """`-I../x` -> ("-I", "../x") for the path-carrying options written joined."""
    for opt in ("-isystem", "-iquote", "-idirafter", "-include", "-imacros", "-I", "-L", "-T"):
        if tok.startswith(opt) and len(tok) > len(opt):
            return opt, tok[len(opt):]
    return None


def _parse_compile(cwd: Path, argv: list[str], where: str) -> Compile:
    args: list[str] = []
    output: Path | None = None
    sources: list[Path] = []
    raw: list[str] = []
    i = 1
    while i < len(argv):
        tok = argv[i]
        if tok in _WITH_ARG and i + 1 < len(argv):
            val = argv[i + 1]
            i += 2
            if tok == "-o":
                output = _abs(cwd, val)
            elif tok in ("-MF", "-MT", "-MQ"):
                pass  # make's dependency files: SCons scans headers itself
            elif tok in _PATH_ARG:
                args += [tok, str(_abs(cwd, val))]
                raw.append(val)
            else:
                args += [tok, val]
            continue
        i += 1
        joined = _split_option(tok)
        if joined:
            args.append(joined[0] + str(_abs(cwd, joined[1])))
            raw.append(joined[1])
        elif tok in _DEP_FLAGS or tok.startswith("-MF"):
            continue
        elif not tok.startswith("-") and Path(tok).suffix in _SOURCE_SUFFIXES:
            sources.append(_abs(cwd, tok))
            raw.append(tok)
        else:
            args.append(tok)
    if output is None or len(sources) != 1:
        raise InputError(f"{where}: cannot read this compile command (need one -o and one source): {shlex.join(argv)}")
    return Compile(cwd, sources[0], output, _SOURCE_SUFFIXES[sources[0].suffix], tuple(args), _macro_maps(cwd, raw))


def _macro_maps(cwd: Path, raw: list[str]) -> tuple[tuple[str, str], ...]:
    ups: set[int] = set()
    for tok in raw:
        parts = [p for p in tok.split("/") if p not in ("", ".")] if not tok.startswith("/") else []
        k = 0
        while k < len(parts) and parts[k] == "..":
            k += 1
        if k:
            ups.add(k)
    return tuple((str(cwd.parents[k - 1]), "/".join([".."] * k)) for k in sorted(ups, reverse=True) if k <= len(cwd.parents))


def _parse_archive(cwd: Path, argv: list[str], where: str) -> Archive:
    words = [w for w in argv[1:] if not w.startswith("-")]
    if len(words) < 2 or not words[0].endswith(".a"):  # "ar -r lib.a a.o b.o" or "ar rcs lib.a ..."
        words = words[1:] if len(words) > 2 else words
    if len(words) < 2 or not words[0].endswith(".a"):
        raise InputError(f"{where}: cannot read this archive command: {shlex.join(argv)}")
    members: list[Path] = []
    for w in words[1:]:
        p = _abs(cwd, w)
        if p not in members:  # make's $^ lists each prerequisite once
            members.append(p)
    return Archive(cwd, _abs(cwd, words[0]), tuple(members))


def _parse_link(cwd: Path, argv: list[str], where: str) -> Link:
    out: list[str | tuple[str, Path]] = []
    output: Path | None = None
    i = 1
    while i < len(argv):
        tok = argv[i]
        if tok in ("-o", "--output") and i + 1 < len(argv):
            output = _abs(cwd, argv[i + 1])
            i += 2
            continue
        if tok.startswith("--output="):
            output = _abs(cwd, tok.split("=", 1)[1])
        elif tok == "-MF" and i + 1 < len(argv):
            i += 2
            continue
        elif tok in _DEP_FLAGS:
            pass
        elif tok in ("-L", "-T") and i + 1 < len(argv):
            out.append(("libdir" if tok == "-L" else "script", _abs(cwd, argv[i + 1])))
            i += 2
            continue
        elif tok in _WITH_ARG and i + 1 < len(argv):
            val = argv[i + 1]
            out += [tok, str(_abs(cwd, val)) if tok in _PATH_ARG else val]
            i += 2
            continue
        elif tok.startswith("-L") and len(tok) > 2:
            out.append(("libdir", _abs(cwd, tok[2:])))
        elif tok.startswith("-T") and len(tok) > 2:
            out.append(("script", _abs(cwd, tok[2:])))
        elif tok.startswith(("-Wl,-Map,", "-Wl,-Map=")):
            out.append(("map", _abs(cwd, tok[len("-Wl,-Map,"):])))
        elif (joined := _split_option(tok)) is not None:
            out.append(joined[0] + str(_abs(cwd, joined[1])))
        elif not tok.startswith("-") and tok.endswith(".o"):
            out.append(("obj", _abs(cwd, tok)))
        elif not tok.startswith("-") and tok.endswith(".a"):
            out.append(("lib", _abs(cwd, tok)))
        else:
            out.append(tok)
        i += 1
    if output is None:
        raise InputError(f"{where}: cannot read this link command (no -o/--output): {shlex.join(argv)}")
    return Link(cwd, output, tuple(out))


def _role(argv0: str) -> str:
    base = os.path.basename(argv0)
    for suffix, role in (("g++", "cxx"), ("c++", "cxx"), ("gcc", "cc"), ("-ar", "ar"), ("objcopy", "objcopy"), ("size", "size")):
        if base.endswith(suffix) or base == suffix.lstrip("-"):
            return role
    return "other"


_ENTER = "sparkflash-submake-enter "
_LEAVE = "sparkflash-submake-leave"


def _submake_dir(marker: str) -> Path:
    """The directory a sub-make works in: where it started, then each -C in order."""
    start, *args = marker.split("\037")
    d = Path(start)
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-C", "--directory") and i + 1 < len(args):
            d, i = _abs(d, args[i + 1]), i + 2
            continue
        if a.startswith("--directory="):
            d = _abs(d, a.split("=", 1)[1])
        elif a.startswith("-C") and len(a) > 2:
            d = _abs(d, a[2:])
        i += 1
    return d


def parse(output: str, top: Path) -> MakePlan:
    """Turn `make -n -B -w` output into a plan (exposed for tests)."""
    plan = MakePlan()
    stack = [top]
    for lineno, line in enumerate(output.splitlines(), 1):
        if line.startswith(_ENTER):
            stack.append(_submake_dir(line[len(_ENTER):]))
            continue
        if line == _LEAVE:
            if len(stack) > 1:
                stack.pop()
            continue
        d = _DIR.match(line)
        if d:
            if d.group(1) == "Entering":
                stack.append(Path(d.group(2)))
            elif len(stack) > 1:
                stack.pop()
            continue
        try:
            argv = shlex.split(line)
        except ValueError:
            continue
        if not argv:
            continue
        role, cwd, where = _role(argv[0]), stack[-1], f"make -n line {lineno} (in {stack[-1]})"
        if role in ("cc", "cxx") and "-c" in argv:
            plan.compiles.append(_parse_compile(cwd, argv, where))
        elif role in ("cc", "cxx") and ("-o" in argv or "--output" in argv or any(a.startswith("--output=") for a in argv)):
            plan.links.append(_parse_link(cwd, argv, where))
        elif role == "ar":
            plan.archives.append(_parse_archive(cwd, argv, where))
        else:
            continue
        plan.commands += 1
    return plan


def make_program() -> str:
    """GNU make: the trees' makefiles are the truth, so reading them needs make."""
    found = shutil.which("make")
    if not found:
        raise InputError("make not found in PATH: sparkflash reads the core-firmware makefiles with GNU make "
                         "(`make -n`); install the Debian package make (apt-get install make)")
    return found


def probe(build_dir: Path, variables: dict[str, str], goal: tuple[str, ...] = ()) -> MakePlan:
    """Run `make -n -B -w` in a tree's build/ directory with `variables` on the command line.

    Raises InputError with make's own message (which names the missing file) when make
    cannot plan the build, and when the plan has no link.
    """
    make = make_program()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
        "SPARKFLASH_MAKE": make,
        "SPARKFLASH_SUBMAKE": f"sh {shlex.quote(str(PROBE_SCRIPT))}",
    }
    cmd = [make, "-n", "-B", "-w", f"MAKE=sh {PROBE_SCRIPT}", *(f"{k}={v}" for k, v in variables.items()), *goal]
    r = subprocess.run(cmd, cwd=build_dir, env=env, capture_output=True, text=True, check=False)
    if r.returncode:
        msg = " / ".join(line.strip() for line in r.stderr.splitlines() if line.strip())[-800:]
        raise InputError(f"{build_dir}: make cannot build this tree ({shlex.join(cmd[5:]) or 'default goal'}): {msg}")
    plan = parse(r.stdout, build_dir.resolve())
    if not plan.links:
        raise InputError(f"{build_dir}: make -n printed no link command: is this a core-firmware build directory?")
    return plan


_WATCHED = ("makefile", "Makefile", "GNUmakefile")


def _signature(roots: list[Path], variables: dict[str, str]) -> dict[str, object]:
    """What `make -n -B` output depends on, cheaply: every directory of the trees (an
    entry added, removed or renamed changes its mtime: wildcards and new build.mk files),
    every makefile and *.mk (content edits), the variables, make and this parser."""
    entries: dict[str, list[int]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            st = os.stat(dirpath)
            entries[dirpath] = [st.st_ino, st.st_mtime_ns]
            for f in filenames:
                if f in _WATCHED or f.endswith(".mk"):
                    p = os.path.join(dirpath, f)
                    st = os.stat(p)
                    entries[p] = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    tools = [make_program(), __file__, str(PROBE_SCRIPT)]
    return {"variables": variables, "entries": entries,
            "tools": {t: [os.stat(t).st_size, os.stat(t).st_mtime_ns] for t in tools}}


def _to_json(plan: MakePlan) -> dict[str, object]:
    def link_arg(a: str | tuple[str, Path]) -> object:
        return a if isinstance(a, str) else [a[0], str(a[1])]

    return {
        "compiles": [[str(c.cwd), str(c.source), str(c.output), c.lang, list(c.args), [list(m) for m in c.macro_maps]]
                     for c in plan.compiles],
        "archives": [[str(a.cwd), str(a.output), [str(m) for m in a.members]] for a in plan.archives],
        "links": [[str(k.cwd), str(k.output), [link_arg(a) for a in k.args]] for k in plan.links],
        "commands": plan.commands,
    }


def _from_json(d: dict[str, object]) -> MakePlan:
    plan = MakePlan(commands=int(d["commands"]))  # type: ignore[call-overload]
    for cwd, src, out, lang, args, maps in d["compiles"]:  # type: ignore[attr-defined]
        plan.compiles.append(Compile(Path(cwd), Path(src), Path(out), lang, tuple(args), tuple((a, b) for a, b in maps)))
    for cwd, out, members in d["archives"]:  # type: ignore[attr-defined]
        plan.archives.append(Archive(Path(cwd), Path(out), tuple(Path(m) for m in members)))
    for cwd, out, args in d["links"]:  # type: ignore[attr-defined]
        plan.links.append(Link(Path(cwd), Path(out), tuple(a if isinstance(a, str) else (a[0], Path(a[1])) for a in args)))
    return plan


def _roots(plan: MakePlan, build_dir: Path) -> list[Path]:
    dirs = {c.cwd for c in plan.compiles} | {a.cwd for a in plan.archives} | {k.cwd for k in plan.links} | {build_dir}
    return sorted({d.parent if d.name == "build" else d for d in dirs})


def cached_probe(build_dir: Path, variables: dict[str, str], cache_dir: Path,
                 pending: list[Callable[[], None]] | None = None) -> MakePlan:
    """`probe()`, reused while nothing it depends on changed (see `_signature`): running
    make and its sub-makes costs 0.1-0.2 s, a third of a no-op build."""
    import hashlib
    import json

    build_dir = build_dir.resolve()
    # this parser's own path too: two checkouts building one tree keep a record each
    # instead of overwriting each other's (their signatures name different files)
    key = hashlib.sha256(json.dumps([str(build_dir), variables, __file__], sort_keys=True).encode()).hexdigest()[:16]
    cache = cache_dir / f"makeplan-{key}.json"
    try:
        rec = json.loads(cache.read_text())
        if rec["signature"] == json.loads(json.dumps(_signature([Path(r) for r in rec["roots"]], variables))):
            return _from_json(rec["plan"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    plan = probe(build_dir, variables)
    roots = _roots(plan, build_dir)
    record = {"roots": [str(r) for r in roots], "signature": _signature(roots, variables), "plan": _to_json(plan)}

    def write() -> None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(cache)
        prune(cache.parent, "makeplan-")  # temporary trees (tests, benchmarks) leave plans behind

    if pending is None:
        write()
    else:
        pending.append(write)
    return plan
