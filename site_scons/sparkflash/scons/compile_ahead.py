"""Compile and link ahead: after an edit, the compile and the link run while SCons loads;
after a clean, the first -j compiles do.

In a one-file edit make starts the compile ~0.03 s after it was run; scons needs ~0.08 s to
import SCons and ~0.25 s more to read the SConstruct and decide every object before the link.
`start()` (called from site_scons/site_init.py, which SCons runs right after its import)
adopts the early compiles sparkflash-scons started before it became this process, or starts
them itself (sparkflash.scons.early_compile: what the last successful build with the same
command line recorded, and which of its objects are missing or due, the first -j of them).
A thread then links, into temporary outputs, once those compiles have ended, if every other
input of the link is as recorded.

SCons still decides everything. `spawn()` is the firmware environment's SPAWN: when SCons
runs a command, an early run is used only if it is exactly that command line with the same
environment, it succeeded, and every dependency SCons now knows for the target (sources,
headers, tool files; for the link its objects, archives and script) is among those stat'ed
before the early run began and unchanged (inode, size, mtime and ctime in ns) until it ended,
an early object the link read being the one SCons just took. Otherwise it is dropped and the
command runs as usual. gcc does not record its -o name, and ld names its inputs only in the
map, whose temporary names are put back: the outputs are the same bytes either way.
`record()` rewrites the record after each successful build; it also keeps what the last run
used, dropped and never got asked for (`last`), which the tests read.
"""

from __future__ import annotations

import atexit
import os
import shlex
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import SCons.Node.FS
import SCons.Node.Python
import SCons.Script
import SCons.Util
from SCons.Platform.posix import subprocess_spawn

from sparkflash.firmware.buildcache import prune
from sparkflash.scons import early_compile, stored_hashes
from sparkflash.scons.early_compile import NO_BUILD, Early

__all__ = ["record", "spawn", "start"]


def _dependencies(node: Any, paths: dict[Any, str] | None = None) -> tuple[list[str], list[str]]:
    """What SCons lists for an object: its files (absolute paths) and its Value nodes;
    `paths` keeps each file node's path for the next call (objects share most headers)."""
    files: list[str] = []
    values: list[str] = []
    for child in node.children():
        path = paths.get(child) if paths is not None else None
        if path is not None:
            files.append(path)
        elif isinstance(child, SCons.Node.Python.Value):
            values.append(str(child))
        else:
            files.append(child.get_abspath())
            if paths is not None:
                paths[child] = files[-1]
    return files, values


def _unusable(early: Early, node: Any, what: str = "compile", skip: dict[str, str] | None = None) -> str:
    """"" if SCons' view of the target's dependencies (but those in `skip`) is what the
    early run saw when it began, else why not."""
    if early.wait():
        return f"the early {what} failed"
    files, values = _dependencies(node)
    for path in files:
        if skip and path in skip:
            continue
        if path not in early.snapshot:
            return f"{path}: a new dependency"
        if early_compile.stat(path) != early.snapshot[path]:
            return f"{path}: changed during the early {what}"
    return "" if sorted(values) == sorted(early.values) else "the toolchain changed"


_MAP = "-Wl,-Map,"
_lock = threading.Lock()  # an early object moved into place vs. an early link holding on to it


@dataclass
class _Link:
    """A link started early, by a thread, once the early compiles it links have ended."""

    entry: dict[str, Any]  # as recorded
    inputs: list[Early]  # the early compiles whose objects it links
    thread: threading.Thread | None = None
    run: Early | None = None  # the linker, once started
    held: dict[str, str] = field(default_factory=dict)  # object -> the hard link to it the linker reads
    words: list[tuple[bytes, bytes]] = field(default_factory=list)  # temporary path -> real one, in the map
    temp_map: str = ""
    why: str = ""  # why it never started
    hashes: dict[str, tuple[tuple[int, int, int], str, str]] = field(default_factory=dict)  # output -> its temporary's

    def discard(self) -> None:
        if self.run is not None:
            self.run.discard()
        for path in (*self.held.values(), self.temp_map):
            early_compile.remove(path)


@dataclass
class _State:
    started: bool = False  # start() ran: without it nothing is recorded
    stale: bool = False  # the record had objects whose dependencies changed
    argv: list[str] = field(default_factory=list)
    top: str = ""  # the SConstruct's directory (SCons runs there)
    old: dict[str, Any] = field(default_factory=dict)  # the record as this run found it
    early: dict[str, Early] = field(default_factory=dict)  # by command line
    early_from: str = ""  # who started them: "sparkflash-scons" or "site_init"
    links: dict[str, _Link] = field(default_factory=dict)  # by command line
    closing: bool = False  # the process exits: no early link may start any more
    spawned: dict[str, dict[str, Any]] = field(default_factory=dict)  # target -> what this run spawned
    used: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)


_state = _State()


def start(argv: list[str] | None = None) -> None:
    """Adopt the early compiles `sparkflash-scons` started for this process, or start the
    compiles of objects whose dependencies changed since the last build."""
    handed, early_compile.launched = early_compile.launched, None
    stored_hashes.use_hash_format()  # before an early link hashes its outputs
    if os.environ.get("SPARKFLASH_COMPILE_AHEAD") == "off":
        return  # nothing started, nothing recorded: SCons alone
    argv = list(sys.argv[1:] if argv is None else argv)
    _state.argv, _state.top, _state.started = argv, os.getcwd(), True
    if handed is not None and handed[0] == argv:
        old, stale, early = handed[1]
    else:
        for e in handed[1][2] if handed is not None else []:  # not for these arguments (never: one argv)
            e.discard()
        old, stale, early = early_compile.start(argv, _state.top)
    _state.old, _state.stale = old or {}, stale
    if early:
        atexit.register(_discard_all)
        _state.early = {e.line: e for e in early}
        _state.early_from = "site_init" if handed is None else "sparkflash-scons"
        if old is not None:
            _start_links(old, early)


def _start_links(old: dict[str, Any], early: list[Early]) -> None:
    """An early link for each recorded link of these early compiles' objects whose other
    inputs (objects, archives, scripts) are as recorded. Its command is made here; the
    thread that waits for the compiles only has to start it."""
    by_target = {e.target: e for e in early}
    names, files = old["names"], old["files"]
    for entry in old["links"]:
        inputs = [by_target[t] for _, t in entry["objects"] if t in by_target]
        others = {names[i]: files[names[i]] or None for i in entry["deps"] if names[i] not in by_target}
        if not inputs or any(early_compile.stat(n) != st for n, st in others.items()):
            continue  # nothing of ours to link, or something SCons will rebuild first (an archive)
        link = _Link(entry, inputs, held={e.target: f"{e.temp}.link" for e in inputs})
        args = list(entry["args"])
        for i, target in entry["objects"]:
            if target in link.held:  # the same folder, so the word stays a plain relative path
                word = os.path.join(os.path.dirname(args[i]), os.path.basename(link.held[target]))
                link.words.append((word.encode(), args[i].encode()))
                args[i] = word
        out = shlex.split(args[entry["out"]])[0]
        link.words.append((early_compile.temp_name(out).encode(), out.encode()))
        args[entry["out"]] = early_compile.escape(early_compile.temp_name(out))
        if entry["map"] >= 0:
            map_word = args[entry["map"]][len(_MAP):]
            args[entry["map"]] = _MAP + early_compile.temp_name(map_word)
            link.temp_map = os.path.abspath(early_compile.temp_name(map_word))
        link.thread = threading.Thread(target=_launch_link, args=(link, args, others, old["env"]), daemon=True)
        _state.links[" ".join(entry["args"])] = link
        # the thread must get the interpreter back within 0.5 ms (not 5) when a compile ends:
        # SCons' own thread is busy deciding the other objects all that time
        sys.setswitchinterval(_SWITCH)
        link.thread.start()


_SWITCH = 0.0005
_DEFAULT_SWITCH = sys.getswitchinterval()


def _launch_link(link: _Link, args: list[str], snapshot: dict[str, Any], env: dict[str, str]) -> None:
    """Wait for the early compiles, then link their objects (through hard links: SCons may
    move one into place meanwhile) into temporary outputs, put the real names of the
    objects and the .elf into the map, and hash both outputs."""
    try:
        for e in link.inputs:
            if e.wait():
                link.why = f"the early compile of {e.target} failed (exit status {e.status})"
                return
        with _lock:
            if _state.closing:
                return
            for e in link.inputs:
                try:
                    os.link(e.temp if e.target not in _state.used else e.target, link.held[e.target])
                except OSError:
                    link.why = f"{e.target}: the early compile's object is gone"
                    return
            link.run = early_compile.run(link.entry, args, early_compile.temp_name(link.entry["target"]), snapshot, env)
            if link.run is None:
                link.why = "the early link could not start"
                return
        if not link.run.wait():
            _after_ld(link)
    finally:  # the fast switch costs nothing while this thread sleeps, and SCons waits for its end
        sys.setswitchinterval(_DEFAULT_SWITCH)


def _after_ld(link: _Link) -> None:
    """The map with the real names, and both outputs hashed (the .elf in a second thread)."""
    assert link.run is not None
    elf = threading.Thread(target=_hash_ahead, args=(link, link.run.temp, link.entry["target"]), daemon=True)
    elf.start()  # beside the map's rewrite: hashlib lets go of the interpreter
    try:
        with _lock:  # the map names the real files (done here: SCons may still be deciding)
            if _state.closing or not link.temp_map:
                return
            with open(link.temp_map, "rb") as f:
                text = f.read()
            for temp, real in link.words:
                text = text.replace(temp, real)
            with open(link.temp_map, "wb") as f:
                f.write(text)
        _hash_ahead(link, link.temp_map, _map_of(link.entry), text)
    finally:
        elf.join()


def _map_of(entry: dict[str, Any]) -> str:
    """The map a recorded link writes (absolute)."""
    word: str = entry["args"][entry["map"]]
    return os.path.abspath(word[len(_MAP):])


def _hash_ahead(link: _Link, temp: str, real: str, content: bytes | None = None) -> None:
    """The content hash SCons computes for `real` right after the link, taken from `temp`
    (to be moved there) now, while SCons is still waiting for the link thread."""
    before = early_compile.stat(temp)
    if before is None:
        return
    # in one read (the same digest as SCons' 64 KiB chunks): each chunk would be a round of
    # handing the interpreter back and forth with the map's rewrite
    csig = SCons.Util.hash_signature(content) if content is not None else SCons.Util.hash_file_signature(temp, before[1] + 1)
    if early_compile.stat(temp) == before:
        link.hashes[real] = (before[:3], csig, SCons.Util.get_current_hash_algorithm_used())


def _discard_all() -> None:
    with _lock:
        _state.closing = True
    for link in _state.links.values():
        link.discard()
    for e in _state.early.values():
        e.discard()
    _state.links.clear()
    _state.early.clear()


def _target_of(args: list[str]) -> tuple[int, str] | None:
    """The index of the -o (or --output) word and the path it names (unescaped), if there is one."""
    i = next((n + 1 for n, a in enumerate(args) if a in ("-o", "--output")), 0)
    try:
        words = shlex.split(args[i]) if i else []
    except (ValueError, IndexError):
        return None
    return (i, os.path.abspath(words[0])) if len(words) == 1 else None


def _replay(early: Early) -> None:
    """What an early run printed, where SCons' command would have printed it."""
    for fd, stream in ((early.out, sys.stdout), (early.err, sys.stderr)):
        data = early.output(fd)
        stream.flush()
        while data:
            data = data[os.write(stream.fileno(), data):]


def _link_unusable(link: _Link, node: Any) -> str:
    """"" if the early link read what SCons would link now, else why not."""
    if link.thread is not None:
        link.thread.join()
    if link.run is None:
        return link.why or "the early link did not start"
    why = _unusable(link.run, node, "link", skip=link.held)  # the early objects: checked below
    for target, held in link.held.items():
        now, read = early_compile.stat(target), early_compile.stat(held)
        if not why and (target not in _state.used or now is None or read is None or now[:3] != read[:3]):
            why = f"{target}: not the object the early link read"
    return why


def _serve_link(link: _Link) -> None:
    """Move the early link's outputs into place."""
    assert link.run is not None
    os.replace(link.run.temp, link.entry["target"])
    if link.temp_map:
        os.replace(link.temp_map, _map_of(link.entry))
        link.temp_map = ""
    for real, (key, csig, algorithm) in link.hashes.items():
        stored_hashes.hashed_ahead(real, key, csig, algorithm)
    _replay(link.run)


def spawn(sh: str, escape: Any, cmd: str, args: list[str], env: dict[str, str]) -> int:
    """SPAWN of the firmware environments: an early compile or link of this exact command
    if it still holds, else the command (as SCons' own POSIX spawn runs it)."""
    line = " ".join(args)
    out = _target_of(args)
    early, link = _state.early.pop(line, None), _state.links.pop(line, None)
    target = early.target if early is not None else link.entry["target"] if link is not None else ""
    if target:
        node = SCons.Node.FS.get_default_fs().File(target)
        why = ("another environment" if env != _state.old.get("env")
               else _unusable(early, node) if early is not None else _link_unusable(link, node) if link is not None else "")
        if not why:
            if early is not None:
                with _lock:  # an early link sees the temporary file, or the object in place and used
                    os.replace(early.temp, early.target)
                    _state.used.append(target)
                _replay(early)
                early.discard()
            elif link is not None:
                _serve_link(link)
                link.discard()
                _state.used.append(target)
            if out:
                _state.spawned[out[1]] = {"args": args, "out": out[0], "env": env}
            return 0
        _state.dropped[target] = why
        for run in (early, link):
            if run is not None:
                run.discard()
    rc: int = subprocess_spawn(sh, escape, cmd, args, env)
    if rc == 0 and out:
        _state.spawned[out[1]] = {"args": args, "out": out[0], "env": env}
    return rc


def record(objects: list[Any], links: list[Any]) -> None:
    """After a successful build: each object's and link's command (spawned now, or as
    recorded before) and the stat of its dependencies, which are all current now."""
    if not _state.started or not (_state.spawned or _state.stale):
        return  # nothing was compiled and nothing changed: the record still holds
    if NO_BUILD & set(_state.argv) or SCons.Script.GetOption("no_exec") or SCons.Script.GetOption("clean"):
        return
    old = {o["target"]: o for o in _state.old.get("objects", [])}
    env = next((s["env"] for s in _state.spawned.values()), _state.old.get("env"))
    if env is None:
        return
    names: dict[str, int] = {}
    paths: dict[Any, str] = {}

    def entry(node: Any, recorded: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """The node's command as spawned now or recorded before, and its dependencies."""
        target = node.get_abspath()
        now = _state.spawned.get(target) or recorded.get(target)
        if now is None or now.get("env", env) != env:
            return None
        files, values = _dependencies(node, paths)
        return {"target": target, "args": now["args"], "out": now["out"],
                "deps": [names.setdefault(path, len(names)) for path in files], "values": values}

    entries = [e for e in (entry(node, old) for node in objects) if e is not None]
    compiled = {e["target"] for e in entries}
    link_entries = [e for e in (entry(node, {k["target"]: k for k in _state.old.get("links", [])}) for node in links)
                    if e is not None]
    for e in link_entries:  # which words are objects (the early link swaps them), which the map
        e["objects"] = [(i, os.path.abspath(w)) for i, w in enumerate(e["args"])
                        if i != e["out"] and w == shlex.quote(w) and os.path.abspath(w) in compiled]
        e["map"] = next((i for i, w in enumerate(e["args"]) if w.startswith(_MAP) and w == shlex.quote(w)), -1)
    files = {name: early_compile.stat(name) or () for name in names}
    folder = early_compile.write({
        "version": early_compile.VERSION, "argv": _state.argv, "top": _state.top, "env": env, "names": list(names),
        "files": files, "objects": entries, "links": link_entries,
        "last": {"used": _state.used, "dropped": _state.dropped, "from": _state.early_from,
                 "unused": sorted([*(e.target for e in _state.early.values()),
                                   *(k.entry["target"] for k in _state.links.values())])}})
    if folder is not None and not _state.old:  # a record added: one per checkout and command line, the oldest go
        prune(folder, early_compile.RECORD_PREFIX, suffix=".marshal")
