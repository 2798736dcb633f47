"""Early compiles: the compiles a build's record says are due, started without SCons.

Two callers start them: `sparkflash-scons` (sparkflash.scons.launch) ~0.02 s after it is run,
before it imports SCons, and site_scons/site_init.py when scons is run directly, ~0.1 s in,
right after SCons' import. So this module imports nothing but `os` and `marshal`
(json alone would cost the launcher 7 ms of `re`). What SCons then does with them is
sparkflash.scons.compile_ahead's business.

The record (`compile-ahead-<key>.marshal`, one per checkout and command line, in the
per-user folder of sparkflash.firmware.buildcache, so that `rm -r build` does not lose it)
is ours, written whole and renamed into place by the last successful build; it is still
checked entry by entry, and anything unexpected means "no early compile", never an error.
"""

from __future__ import annotations

import _thread
import marshal
import os

from sparkflash.usercache import build_records_folder

TYPE_CHECKING = False  # typing costs the launcher 5 ms (it imports re)
if TYPE_CHECKING:
    from typing import Any, TypeGuard

__all__ = ["RECORD_PREFIX", "Early", "Started", "due", "escape", "jobs", "launch", "launched", "load", "record_path",
           "remove", "run", "start", "stat", "temp_name", "write"]

VERSION = 3
RECORD_PREFIX = "compile-ahead-"
NO_BUILD = {"-c", "--clean", "--remove", "-n", "--no-exec", "--just-print", "--dry-run", "--recon", "-q", "--question",
            "-h", "--help", "-H", "--help-options", "--interactive", "--cache-show"}

Stat = tuple[int, int, int, int]
Started = tuple["dict[str, Any] | None", bool, "list[Early]"]  # start(): the record, any object due, the compiles

#: what sparkflash-scons started before it ran SCons in this process: its arguments and start()
launched: tuple[list[str], Started] | None = None


def stat(path: str) -> Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def record_path(argv: list[str], top: str) -> str:
    """The record of builds run with these arguments in the SConstruct directory `top`: in
    the per-user folder, else (SPARKFLASH_BUILD_CACHE=off, a folder that is not there or
    not writable) under top/build/.sparkflash. Its name is a 64-bit FNV-1a of both (hashlib
    costs 3 ms to import); the record holds them, so a collision only means no early compile."""
    key = 0xCBF29CE484222325
    for byte in "\0".join([top, *argv]).encode("utf-8", "surrogateescape"):
        key = ((key ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    folder = build_records_folder()
    if folder is None or not os.access(folder, os.W_OK | os.X_OK):  # as buildcache.build_cache_dir falls back
        folder = os.path.join(top, "build", ".sparkflash")
    return os.path.join(folder, f"{RECORD_PREFIX}{key:016x}.marshal")


def jobs(argv: list[str]) -> int:
    """SCons' -j from the command line (1 if absent or not a positive number)."""
    for i, a in enumerate(argv):
        value = a[2:] if a.startswith("-j") and len(a) > 2 else a.partition("=")[2] if a.startswith("--jobs=") else None
        if value is None and a in ("-j", "--jobs") and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None:
            return int(value) if value.isdigit() and int(value) > 0 else 1
    return 1


def _strings(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(s, str) for s in value)


def _valid(old: Any, argv: list[str], top: str) -> bool:
    if not (isinstance(old, dict) and old.get("version") == VERSION and old.get("argv") == argv
            and old.get("top") == top):
        return False
    names, files, env, objects = old.get("names"), old.get("files"), old.get("env"), old.get("objects")
    if not (_strings(names) and isinstance(files, dict) and isinstance(env, dict) and isinstance(objects, list)):
        return False
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        return False
    if not all(isinstance(files.get(n), tuple) and len(files[n]) in (0, 4)
               and all(isinstance(x, int) for x in files[n]) for n in names):
        return False
    links = old.get("links")
    if not isinstance(links, list):
        return False
    for o in [*objects, *links]:
        if not (isinstance(o, dict) and isinstance(o.get("target"), str) and _strings(o.get("args"))
                and isinstance(o.get("out"), int) and 0 < o["out"] < len(o["args"]) and _strings(o.get("values"))
                and isinstance(o.get("deps"), list)
                and all(isinstance(i, int) and 0 <= i < len(names) for i in o["deps"])):
            return False
    return all(isinstance(k.get("map"), int) and -1 <= k["map"] < len(k["args"]) and isinstance(k.get("objects"), list)
               and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], int) and 0 < x[0] < len(k["args"])
                       and isinstance(x[1], str) for x in k["objects"]) for k in links)


def load(argv: list[str], top: str) -> dict[str, Any] | None:
    """The record for these arguments in `top` if there is one and it is consistent, else
    None (a build without early compiles, which then writes a new record)."""
    try:
        with open(record_path(argv, top), "rb") as f:
            old = marshal.loads(f.read())  # marshal.load(f) reads piece by piece: 5 ms, not 0.3
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return old if _valid(old, argv, top) else None


def write(data: dict[str, Any]) -> str | None:
    """Replace the record of data["argv"] in data["top"] whole; its folder, or None if it
    cannot be written (the next build then starts nothing early)."""
    path = record_path(data["argv"], data["top"])
    temp = f"{path}.{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temp, "wb") as f:
            marshal.dump(data, f)
        os.replace(temp, path)
    except OSError:
        remove(temp)
        return None
    return os.path.dirname(path)


def due(old: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded objects that are missing or one of whose dependencies changed since the
    record was written, in the record's order (the order SCons meets them)."""
    names, files = old["names"], old["files"]
    now = {name: stat(name) for name in names}
    return [o for o in old["objects"]
            if any(now[names[i]] != (files[names[i]] or None) for i in o["deps"]) or stat(o["target"]) is None]


class Early:
    """One compile started early; SCons may use it for the command line `line` only."""

    def __init__(self, line: str, target: str, temp: str, snapshot: dict[str, Stat | None], values: list[str],
                 pid: int, out: int, err: int) -> None:
        self.line, self.target, self.temp, self.values = line, target, temp, values
        self.snapshot = snapshot  # every recorded dependency, stat'ed before the compile began
        self.pid, self.out, self.err = pid, out, err  # the compiler's shell; its stdout, stderr (unlinked files)
        self.status: int | None = None
        self._waiting = _thread.allocate_lock()  # SCons' SPAWN and an early link may both wait

    def wait(self) -> int:
        """The compile's exit status (waiting for it); -1 if it is not this process' child."""
        with self._waiting:
            if self.status is None:
                try:
                    self.status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
                except ChildProcessError:
                    self.status = -1
        return self.status

    def output(self, fd: int) -> bytes:
        """What the compile wrote to `fd` (self.out or self.err)."""
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)

    def discard(self) -> None:
        """Stop the compile if it still runs, and remove what it wrote."""
        if self.status is None:
            try:
                if os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                    os.kill(self.pid, 9)
                    os.waitpid(self.pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
            self.status = -1
        for fd in (self.out, self.err):
            try:
                os.close(fd)
            except OSError:
                pass
        self.out = self.err = -1
        remove(self.temp)


def remove(path: str) -> None:
    """Remove `path` if it is there."""
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def escape(path: str) -> str:
    """`path` as one sh word (shlex.quote would import re: the launcher's 6 ms)."""
    for c in "\\\"$`":
        path = path.replace(c, "\\" + c)
    return f'"{path}"'


def scratch(path: str) -> int:
    """An open file already unlinked (what tempfile.TemporaryFile gives, without its import)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.unlink(path)
    return fd


def shell(env: dict[str, str]) -> str | None:
    """`sh` as found on the environment's PATH, where SCons' spawn finds it (shutil.which
    would cost the launcher its import)."""
    for folder in os.get_exec_path(env):
        path = os.path.join(folder, "sh")
        if os.access(path, os.X_OK):
            return path
    return None


def temp_name(path: str) -> str:
    """Where an early run writes `path` (beside it, hidden, named for this process)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.ahead-{os.getpid()}")


def run(o: dict[str, Any], args: list[str], temp: str, snapshot: dict[str, Stat | None],
        env: dict[str, str]) -> Early | None:
    """Start `args` (the recorded entry `o`'s command with temporary outputs) in sh, its
    stdout and stderr kept; None where it cannot start (SCons will run it as usual)."""
    sh = shell(env)
    if sh is None:
        return None
    fds: list[int] = []
    try:
        os.makedirs(os.path.dirname(temp) or ".", exist_ok=True)  # after a clean, as SCons would
        for suffix in (".out", ".err"):
            fds.append(scratch(temp + suffix))
        pid = os.posix_spawn(sh, ["sh", "-c", " ".join(args)], env,
                             file_actions=[(os.POSIX_SPAWN_DUP2, fds[0], 1), (os.POSIX_SPAWN_DUP2, fds[1], 2)])
    except OSError:  # an unwritable build directory: SCons will run it as usual
        for fd in fds:
            os.close(fd)
        return None
    return Early(" ".join(o["args"]), o["target"], temp, snapshot, o["values"], pid, fds[0], fds[1])


def launch(o: dict[str, Any], names: list[str], env: dict[str, str]) -> Early | None:
    """Start compiling the recorded object `o` into a temporary file beside it."""
    temp = temp_name(o["target"])
    args = list(o["args"])
    args[o["out"]] = escape(temp)
    snapshot = {names[i]: stat(names[i]) for i in o["deps"]}  # before the compiler reads any of them
    return run(o, args, temp, snapshot, env)


def start(argv: list[str], top: str) -> Started:
    """The record for `argv` in `top`, whether any of its objects is due, and the early
    compiles started for the first -j of them (none if the arguments build nothing): SCons
    meets them first and waits for them, so no more than -j compiles run at once. After
    a clean (`rm -r build`) every object is due, and the build's first compiles run while
    SCons loads."""
    old = None if NO_BUILD & set(argv) else load(argv, top)
    if old is None:
        return None, False, []
    changed = due(old)
    started = [launch(o, old["names"], old["env"]) for o in changed[:jobs(argv)]]
    return old, bool(changed), [e for e in started if e is not None]
