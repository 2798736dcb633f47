"""Compile ahead: an edited source starts compiling before SCons has read the SConstruct.

In a one-file edit make starts the compile ~0.03 s after it was run; scons needs ~0.1 s to
start and import SCons and ~0.15 s more to read the SConstruct and decide the source's ~100
headers.
`start()` (called from site_scons/site_init.py, which SCons runs right after its import) reads
what the last successful build with the same command line recorded: each object's command
line as SCons spawned it, its environment, and the stat of every file SCons knew it to
depend on. Objects whose dependencies changed since (at most as many as -j allows) start
compiling at once, into a temporary file beside the object.

SCons still decides everything. `spawn()` is the compile environments' SPAWN: when SCons
runs an object's command, an early compile is used only if it is exactly that command line
with the same environment, it succeeded, and every dependency SCons now knows for the
object (sources, headers, tool files) is among those stat'ed before the early compile began
and unchanged (inode, size, mtime and ctime in ns) until it ended; otherwise it is dropped
and the command runs as usual. gcc does not record its -o name, so the object is the same
bytes either way. `record()` rewrites the record after each successful build; it also keeps
what the last run used, dropped and never got asked for (`last`), which the tests read.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from typing import IO, Any

import SCons.Node.FS
import SCons.Node.Python
import SCons.Script
from SCons.Platform.posix import escape as shell_escape
from SCons.Platform.posix import subprocess_spawn

__all__ = ["record", "record_path", "spawn", "start"]

_VERSION = 1
_NO_BUILD = {"-c", "--clean", "--remove", "-n", "--no-exec", "--just-print", "--dry-run", "--recon", "-q", "--question",
             "-h", "--help", "-H", "--help-options", "--interactive", "--cache-show"}

Stat = tuple[int, int, int, int]


def _stat(path: str) -> Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class _Early:
    """One compile started early (kept by the command line SCons must spawn for it to count)."""

    env: dict[str, str]
    target: str
    temp: str
    snapshot: dict[str, Stat | None]  # every recorded dependency, stat'ed before the compile began
    values: list[str]  # the object's Value dependencies (the toolchain's content) as recorded
    proc: subprocess.Popen[bytes]
    out: IO[bytes]
    err: IO[bytes]

    def usable(self, node: Any) -> str:
        """"" if SCons' view of the object's dependencies is what this compile saw, else why not."""
        if self.proc.wait():
            return "the early compile failed"
        files, values = _dependencies(node)
        for path in files:
            if path not in self.snapshot:
                return f"{path}: a new dependency"
            if _stat(path) != self.snapshot[path]:
                return f"{path}: changed during the early compile"
        return "" if sorted(values) == sorted(self.values) else "the toolchain changed"

    def discard(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.out, self.err):
            f.close()
        try:
            os.unlink(self.temp)
        except OSError:
            pass


def _dependencies(node: Any) -> tuple[list[str], list[str]]:
    """What SCons lists for an object: its files (absolute paths) and its Value nodes."""
    files: list[str] = []
    values: list[str] = []
    for child in node.children():
        if isinstance(child, SCons.Node.Python.Value):
            values.append(str(child))
        else:
            files.append(child.get_abspath())
    return files, values


def record_path(argv: list[str]) -> str:
    """The record of builds run with these arguments, relative to the SConstruct's directory."""
    key = hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:16]
    return f"build/.sparkflash/compile-ahead-{key}.json"


@dataclass
class _State:
    started: bool = False  # start() ran: without it nothing is recorded
    stale: bool = False  # the record had objects whose dependencies changed
    argv: list[str] = field(default_factory=list)
    old: dict[str, Any] = field(default_factory=dict)  # the record as this run found it
    early: dict[str, _Early] = field(default_factory=dict)  # by command line
    spawned: dict[str, dict[str, Any]] = field(default_factory=dict)  # target -> what this run spawned
    used: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)


_state = _State()


def _jobs(argv: list[str]) -> int:
    for i, a in enumerate(argv):
        value = a[2:] if a.startswith("-j") and len(a) > 2 else a.partition("=")[2] if a.startswith("--jobs=") else None
        if value is None and a in ("-j", "--jobs") and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None:
            return int(value) if value.isdigit() and int(value) > 0 else 1
    return 1


def start(argv: list[str] | None = None) -> None:
    """Start the compiles of objects whose dependencies changed since the last build."""
    if os.environ.get("SPARKFLASH_COMPILE_AHEAD") == "off":
        return  # nothing started, nothing recorded: SCons alone
    argv = list(sys.argv[1:] if argv is None else argv)
    _state.argv, _state.started = argv, True
    if _NO_BUILD & set(argv):
        return
    old = _load(record_path(argv), argv)
    if old is None:
        return
    _state.old = old
    names, files = old["names"], old["files"]
    now = {name: _stat(name) for name in names}
    changed = [o for o in old["objects"] if any(now[names[i]] != (tuple(files[names[i]]) or None) for i in o["deps"])]
    _state.stale = bool(changed)
    if not changed or len(changed) > _jobs(argv):
        return
    atexit.register(_discard_all)
    for o in changed:
        _launch(o, names, old["env"])


def _load(path: str, argv: list[str]) -> dict[str, Any] | None:
    """The record if it is one, for these arguments, and consistent; else None (a build
    without compiles ahead, which then writes a new record)."""
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        names, files, env = old["names"], old["files"], old["env"]
        ok = (old["version"] == _VERSION and old["argv"] == argv and isinstance(env, dict)
              and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
              and all(isinstance(n, str) and isinstance(files[n], list) and len(files[n]) in (0, 4) for n in names))
        for o in old["objects"]:
            args, out = o["args"], o["out"]
            ok = ok and (isinstance(o["target"], str) and isinstance(args, list) and all(isinstance(a, str) for a in args)
                         and isinstance(out, int) and 0 < out < len(args) and all(isinstance(v, str) for v in o["values"])
                         and all(isinstance(i, int) and 0 <= i < len(names) for i in o["deps"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return old if ok else None


def _launch(o: dict[str, Any], names: list[str], env: dict[str, str]) -> None:
    target = o["target"]
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        return
    temp = os.path.join(folder, f".{os.path.basename(target)}.ahead-{os.getpid()}")
    args = list(o["args"])
    args[o["out"]] = shell_escape(temp)
    snapshot = {names[i]: _stat(names[i]) for i in o["deps"]}  # before the compiler reads any of them
    files: list[IO[bytes]] = []
    try:
        for suffix in (".out", ".err"):
            files.append(_scratch(temp + suffix))
        proc = subprocess.Popen(["sh", "-c", " ".join(args)], env=env, stdout=files[0], stderr=files[1], close_fds=True)
    except OSError:  # an unwritable build directory, no sh: SCons will compile it as usual
        for f in files:
            f.close()
        return
    out, err = files
    _state.early[" ".join(o["args"])] = _Early(env, target, temp, snapshot, o["values"], proc, out, err)


def _scratch(path: str) -> IO[bytes]:
    """An open file already unlinked (tempfile's TemporaryFile, without importing tempfile:
    this runs before the SConstruct, on every build)."""
    f = open(path, "w+b")  # noqa: SIM115 (closed by _Early.discard)
    os.unlink(path)
    return f


def _discard_all() -> None:
    for e in _state.early.values():
        e.discard()
    _state.early.clear()


def _target_of(args: list[str]) -> tuple[int, str] | None:
    """The index of the -o word and the path it names (unescaped), if there is one."""
    try:
        i = args.index("-o") + 1
        words = shlex.split(args[i])
    except (ValueError, IndexError):
        return None
    return (i, os.path.abspath(words[0])) if len(words) == 1 else None


def spawn(sh: str, escape: Any, cmd: str, args: list[str], env: dict[str, str]) -> int:
    """SPAWN of the compile environments: an early compile of this exact command if it
    still holds, else the command (as SCons' own POSIX spawn runs it)."""
    line = " ".join(args)
    out = _target_of(args)
    early = _state.early.pop(line, None)
    if early is not None:
        why = "another environment" if early.env != env else early.usable(SCons.Node.FS.get_default_fs().File(early.target))
        if not why:
            os.replace(early.temp, early.target)
            for f, stream in ((early.out, sys.stdout), (early.err, sys.stderr)):
                f.seek(0)
                data = f.read()
                stream.flush()
                while data:
                    data = data[os.write(stream.fileno(), data):]
            early.discard()
            _state.used.append(early.target)
            if out:
                _state.spawned[out[1]] = {"args": args, "out": out[0], "env": env}
            return 0
        _state.dropped[early.target] = why
        early.discard()
    rc: int = subprocess_spawn(sh, escape, cmd, args, env)
    if rc == 0 and out:
        _state.spawned[out[1]] = {"args": args, "out": out[0], "env": env}
    return rc


def record(objects: list[Any]) -> None:
    """After a successful build: each object's command (spawned now, or as recorded before)
    and the stat of its dependencies, which are all current now."""
    if not _state.started or not (_state.spawned or _state.stale):
        return  # nothing was compiled and nothing changed: the record still holds
    if _NO_BUILD & set(_state.argv) or SCons.Script.GetOption("no_exec") or SCons.Script.GetOption("clean"):
        return
    old = {o["target"]: o for o in _state.old.get("objects", [])}
    env = next((s["env"] for s in _state.spawned.values()), _state.old.get("env"))
    if env is None:
        return
    names: dict[str, int] = {}
    entries: list[dict[str, Any]] = []
    for node in objects:
        target = node.get_abspath()
        now = _state.spawned.get(target) or old.get(target)
        if now is None or now.get("env", env) != env:
            continue
        paths, values = _dependencies(node)
        deps = [names.setdefault(path, len(names)) for path in paths]
        entries.append({"target": target, "args": now["args"], "out": now["out"], "deps": deps, "values": values})
    files = {name: list(_stat(name) or ()) for name in names}
    data = {"version": _VERSION, "argv": _state.argv, "env": env, "names": list(names), "files": files,
            "objects": entries, "last": {"used": _state.used, "dropped": _state.dropped,
                                         "unused": sorted(e.target for e in _state.early.values())}}
    path = record_path(_state.argv)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.{os.getpid()}", "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(f"{path}.{os.getpid()}", path)
