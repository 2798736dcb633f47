"""Everything of the toolchain that can change an output, as one content digest.

SCons sees a compile's own headers but not the compiler's: newlib's and libstdc++'s
headers, libc_nano.a, libgcc.a, the specs files and cc1/as/ld are reached through gcc's
search paths. A changed one must rebuild (issue #12: a changed newlib header rebuilt
nothing). The set is what gcc itself reports for the flags in use (-print-prog-name,
-print-search-dirs, the `#include <...>` list of -v); the digest is over file contents.

Cost: the file list is cached per compiler binary and flags; each run stats every file
(ino, size, mtime_ns, ctime_ns; a few ms) and rehashes only files whose stat changed.
ctime cannot be set back by `touch -d`, so an edit undone "in the same second" is seen.
Cache writes can be deferred (`pending`): the SCons tool runs them only once the build
ran, so a command line refused while reading the SConstruct leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from sparkflash.firmware.buildcache import prune
from sparkflash.firmware.toolchain import Toolchain

__all__ = ["content_digest", "toolchain_inputs", "toolchain_key"]

_PROGRAMS = ("cc1", "cc1plus", "collect2", "lto-wrapper", "as", "ld")
_BIN_TOOLS = ("gcc", "g++", "ar", "objcopy", "size", "as", "ld", "ld.bfd")


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _run(cmd: list[str], stdin: str = "") -> str:
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    return r.stdout + r.stderr


def _walk(d: Path, skip: set[Path]) -> list[Path]:
    out: list[Path] = []
    for root, dirs, files in os.walk(d, followlinks=True):
        dirs[:] = sorted(x for x in dirs if not any(s == Path(root, x) or s.is_relative_to(Path(root, x)) for s in skip))
        out += [Path(root, f) for f in sorted(files)]
    return out


def _discover(tc: Toolchain, mflags: tuple[str, ...]) -> list[str]:
    gcc = tc.tool("gcc")
    files: set[Path] = {tc.bindir / f"{tc.prefix}{t}" for t in _BIN_TOOLS}
    for prog in _PROGRAMS:
        p = Path(_run([gcc, *mflags, f"-print-prog-name={prog}"]).strip())
        if p.is_absolute():
            files.add(p)
    libdirs: list[Path] = []
    for line in _run([gcc, *mflags, "-print-search-dirs"]).splitlines():
        if line.startswith("libraries: ="):
            libdirs = [Path(os.path.normpath(p)) for p in line[len("libraries: ="):].split(":") if p]
    seen: set[str] = set()
    for d in libdirs:  # a name found in an earlier directory shadows the later ones
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file() and p.name not in seen and not p.name.startswith(("lto1", "lto-dump")):
                    seen.add(p.name)
                    files.add(p)
    includes: list[Path] = []
    for lang in ("c", "c++"):
        listing, on = _run([gcc, *mflags, f"-x{lang}", "-E", "-v", "-"]), False
        for line in listing.splitlines():
            if line.startswith("#include <...>"):
                on = True
            elif line.startswith("End of search list"):
                on = False
            elif on and line.startswith(" "):
                includes.append(Path(os.path.normpath(line.strip())))
    inc_set = set(includes)
    for d in dict.fromkeys(includes):
        if d.is_dir():
            files |= set(_walk(d, inc_set - {d}))
    return sorted({os.path.normpath(p) for p in files if p.exists()})


Writes = list[Callable[[], None]]


def _write(path: Path, data: object, pending: Writes | None) -> None:
    def go() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
        prune(path.parent, path.name.rsplit("-", 1)[0] + "-")  # toolchain copies of the tests come and go

    if pending is None:
        go()
    else:
        pending.append(go)


def toolchain_key(tc: Toolchain, mflags: tuple[str, ...]) -> str:
    """Names this compiler binary (path and stat) with these -m flags in the cache files."""
    gcc = Path(tc.tool("gcc"))
    return hashlib.sha256(json.dumps([str(gcc), _stat_key(gcc.stat()), list(mflags)]).encode()).hexdigest()[:16]


def toolchain_inputs(tc: Toolchain, mflags: tuple[str, ...], cache_dir: Path, pending: Writes | None = None) -> list[str]:
    """The toolchain files that shape outputs for these -m flags (cached per compiler
    binary; found again when a directory that holds them gains or loses an entry)."""
    cache = cache_dir / f"toolchain-files-{toolchain_key(tc, mflags)}.json"
    try:
        rec = json.loads(cache.read_text())
        if rec["dirs"] == _dir_stats(rec["files"]):
            return list(rec["files"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    files = _discover(tc, mflags)
    _write(cache, {"files": files, "dirs": _dir_stats(files)}, pending)
    return files


def _dir_stats(files: list[str]) -> dict[str, list[int]]:
    """(ino, mtime_ns) of each directory holding a listed file: a file added to or
    removed from one (a new header that shadows another) changes it."""
    out: dict[str, list[int]] = {}
    for d in sorted({os.path.dirname(f) for f in files}):
        try:
            st = os.stat(d)
            out[d] = [st.st_ino, st.st_mtime_ns]
        except OSError:
            out[d] = []
    return out


def content_digest(files: list[str], cache_file: Path, pending: Writes | None = None) -> str:
    """sha256 over (path, SHA-1 of content: fast, and no adversary here) of every file; a file whose stat is as last
    time reuses its recorded hash. Missing files count as such (a removal is a change)."""
    try:
        known: dict[str, list[object]] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        known = {}
    fresh: dict[str, list[object]] = {}
    total = hashlib.sha256()
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            total.update(f"{f}\0missing\0".encode())
            continue
        key = _stat_key(st)
        rec = known.get(f)
        if rec is not None and rec[:4] == key:
            sha = str(rec[4])
        else:
            with open(f, "rb") as fh:
                sha = hashlib.file_digest(fh, "sha1").hexdigest()
        fresh[f] = [*key, sha]
        total.update(f"{f}\0{sha}\0".encode())
    if fresh != known:
        _write(cache_file, fresh, pending)
    return total.hexdigest()
