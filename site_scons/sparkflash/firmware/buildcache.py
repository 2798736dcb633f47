"""Where the build keeps what it learnt about the toolchain, the trees' makefiles and its
last commands.

Hashing the toolchain (~1,000 files, ~170 MB) and asking make for its plan cost ~0.3 s
before the first compile; kept under the checkout's build/, both were lost with every
`rm -r build` and every fresh clone, as was the compile-ahead record (what to start
compiling before SCons loads, sparkflash.scons.early_compile). All three validate
themselves (stat of every file and directory they were made from, see toolinputs,
makeprobe and early_compile), so they live per user, like ccache's (the folder of
sparkflash.usercache): $SPARKFLASH_HOME/cache/build, else $XDG_CACHE_HOME/sparkflash/build
(~/.cache/sparkflash/build). SPARKFLASH_BUILD_CACHE=dir names another directory;
SPARKFLASH_BUILD_CACHE=off keeps them in the checkout (build/.sparkflash), as does a
cache directory that cannot be created or written.
"""

from __future__ import annotations

import os
from pathlib import Path

from sparkflash.usercache import build_records_folder

__all__ = ["build_cache_dir", "prune"]

#: records of one kind kept per directory (temporary trees and toolchain copies of the
#: tests leave records nobody reads again); the least recently written go first
KEEP = 64


def build_cache_dir(fallback: Path) -> Path:
    """The per-user cache directory (created), or `fallback` if it is off or unusable."""
    folder = build_records_folder()
    if folder is None:
        return fallback
    d = Path(folder)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return fallback
    return d if os.access(d, os.W_OK | os.X_OK) else fallback


def prune(directory: Path | str, prefix: str, keep: int = KEEP, suffix: str = ".json") -> None:
    """Remove the oldest `prefix`*`suffix` records beyond `keep` (each record is only a
    cache); another process's temporary file is never one of them."""
    try:
        found = [(e.stat().st_mtime_ns, e.path) for e in os.scandir(directory)
                 if e.name.startswith(prefix) and e.name.endswith(suffix)]
    except OSError:
        return
    for _, path in sorted(found)[:-keep] if len(found) > keep else []:
        try:
            os.unlink(path)
        except OSError:
            pass
