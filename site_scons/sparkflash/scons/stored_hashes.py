"""When SCons may reuse a file's recorded content hash instead of reading the file again.

SCons records whole-second mtimes. Its own rule (max_drift) reuses a recorded hash when the
file's mtime equals the recorded one and is older than max_drift seconds *now*; a file
rewritten within the same second as that record (an object recompiled by a build that
follows the last one within a second, an editor saving twice) keeps the old hash, and the
output built from it is stale. This module applies git's racy-index rule instead: a
recorded hash is trusted only for a file whose mtime second ended before the last build
wrote its records (the .sconsign database's mtime), so no write after that build can hide
behind it. Everything else is hashed again, which costs a read of files changed recently,
but for the outputs of an early link, whose hashes it took while SCons waited for it.
"""

from __future__ import annotations

import os
from typing import Any

import SCons.dblite
import SCons.Node.FS
import SCons.SConsign
import SCons.Script
import SCons.Util

from sparkflash.scons import early_compile

_last_write: list[int] = []  # whole second of the .sconsign database as this run found it
_ahead: dict[str, tuple[tuple[int, int, int], str, str]] = {}  # path -> (inode, size, mtime_ns), hash, algorithm

#: every content hash of a build (unless --hash-format names another): with the SHA
#: instructions of current x86-64 and ARMv8 CPUs, hashlib's SHA-256 reads 2.3x as fast as
#: SCons' default MD5 (a clean build hashes ~60 MB of objects, archives and images)
HASH_FORMAT = "sha256"


def use_hash_format() -> None:
    """Hash with HASH_FORMAT from now on (an early link hashes before the SConstruct is
    read) and after the SConstruct (SCons applies the option again then)."""
    if SCons.Script.GetOption("hash_format") is None:
        SCons.Script.SetOption("hash_format", HASH_FORMAT)
    SCons.Util.set_hash_format(SCons.Script.GetOption("hash_format"))


def hashed_ahead(path: str, key: tuple[int, int, int], csig: str, algorithm: str) -> None:
    """The hash of the file now at `path` (inode, size and mtime `key`), taken by an early
    link while SCons waited (sparkflash.scons.compile_ahead): used once, if still that file
    and SCons still hashes with `algorithm`."""
    _ahead[path] = (key, csig, algorithm)


def records_written() -> int:
    """The second the previous build wrote its records; 0 (trust nothing) if unknown."""
    if not _last_write:
        name = SCons.SConsign.DB_Name or SCons.SConsign.current_sconsign_filename()
        if SCons.SConsign.DB_Module is SCons.dblite and not name.endswith(".dblite"):
            name += ".dblite"
        top = SCons.Node.FS.get_default_fs().Top.abspath
        try:
            _last_write.append(int(os.stat(os.path.join(top, name)).st_mtime))
        except OSError:
            _last_write.append(0)
    return _last_write[0]


def _stored_csig(node: Any) -> str:
    """The hash taken ahead of this very file, or the recorded hash if the file is as
    recorded and was last written before that record was saved; "" to make SCons hash it."""
    ahead = _ahead.pop(node.get_abspath(), None)
    if (ahead is not None and (early_compile.stat(node.get_abspath()) or ())[:3] == ahead[0]
            and ahead[2] == SCons.Util.get_current_hash_algorithm_used()):
        return ahead[1]
    ninfo = getattr(node.get_stored_info(), "ninfo", None)
    csig = getattr(ninfo, "csig", None)
    stamp = getattr(ninfo, "timestamp", None)
    if not csig or not stamp or stamp != node.get_timestamp() or getattr(ninfo, "size", None) != node.get_size():
        return ""
    return str(csig) if stamp < records_written() else ""


def install() -> None:
    """Replace SCons' max_drift rule for every File node of this run."""
    SCons.Node.FS.File.get_max_drift_csig = _stored_csig
