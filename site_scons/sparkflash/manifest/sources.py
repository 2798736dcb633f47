"""Reading `file:` and `dir:` sources of a release YAML without trusting the YAML.

A release YAML may arrive in a pull request, so its paths are confined: after resolving
symlinks, a source must lie inside the YAML's own directory (the project) or a directory
allowed on the command line; `/proc/self/environ` or `../../.aws/credentials` are refused.
Only regular files are read: each is opened with O_NONBLOCK (a FIFO never hangs the open)
and checked with fstat on that same descriptor, so its type and size are known before a
single byte is read, and the read stops one byte past the limit even if the file grows.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from sparkflash.errors import InputError

__all__ = ["SPECIAL_ROOTS", "collect_tree", "confine", "read_regular"]

SPECIAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))  # never sources, even when "allowed"
_CHUNK = 1 << 16


def _inside(p: Path, root: Path) -> bool:
    return p == root or root in p.parents


def confine(base: Path, value: str, allowed: Iterable[Path] = (), kind: str = "file") -> Path:
    """`value` (relative to `base`, the YAML's directory) resolved, if it stays inside `base` or
    an allowed directory; InputError otherwise. Resolution follows every symlink."""
    if "\0" in value:
        raise InputError(f"{value!r}: a path cannot contain a NUL byte")
    roots = [base.resolve(), *(Path(a).resolve() for a in allowed)]
    try:
        p = (base / value).resolve(strict=True)
    except FileNotFoundError:
        missing = "no such file" if kind == "file" else "not a directory (it does not exist)"
        raise InputError(f"{base / value}: {missing}") from None
    except (OSError, RuntimeError) as e:  # a symlink loop, a too-long name
        raise InputError(f"{base / value}: cannot resolve the path: {e}") from None
    if any(_inside(p, s) for s in SPECIAL_ROOTS):
        raise InputError(f"{value}: resolves to {p}, a special file system; a source must be a regular file")
    if not any(_inside(p, r) for r in roots):
        raise InputError(f"{value}: resolves to {p}, outside the release's project directory {roots[0]}; "
                         "sources must stay inside it (or pass --allow-dir DIR to allow another directory)")
    return p


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of one regular file of at most `limit` bytes; no FIFO, device or socket."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: not a regular file (a FIFO, device, socket or directory is never read)")
        if st.st_size > limit:
            raise InputError(f"{path}: {st.st_size} bytes, more than the {limit}-byte limit; nothing was read")
        os.set_blocking(fd, True)
        parts, total = [], 0
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise InputError(f"{path}: grew past {limit} bytes while being read")
            parts.append(chunk)
        return b"".join(parts)
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def collect_tree(root: Path, limit: int) -> dict[str, bytes]:
    """Every regular file under `root` by "/"-separated relative path. Symlinks, special files
    and unreadable directories are errors (never silently left out); `limit` bounds the total."""
    files: dict[str, bytes] = {}
    total = 0

    def fail(e: OSError) -> None:
        raise InputError(f"{e.filename}: cannot list directory: {e.strerror or e}; "
                         "an unreadable directory is never silently left out of a pack")

    for dirpath, dirnames, filenames in os.walk(root, onerror=fail, followlinks=False):
        d = Path(dirpath)
        dirnames.sort()
        for n in [*dirnames, *sorted(filenames)]:
            p = d / n
            try:
                st = p.lstat()
            except OSError as e:
                raise InputError(f"{p}: {e.strerror or e}") from None
            if stat.S_ISLNK(st.st_mode):
                raise InputError(f"{p}: symbolic links are not packed (copy the file instead)")
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{p}: not a regular file or directory")
            data = read_regular(p, limit - total)
            total += len(data)
            files[p.relative_to(root).as_posix()] = data
    return files
