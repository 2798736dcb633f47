"""Where the build keeps what it learnt about the toolchain and the trees' makefiles.

Hashing the toolchain (~1,000 files, ~170 MB) and asking make for its plan cost ~0.3 s
before the first compile; kept under the checkout's build/, both were lost with every
`rm -r build` and every fresh clone. Both records validate themselves (stat of every
file and directory they were made from, see toolinputs and makeprobe), so they live per
user, like ccache's: $SPARKFLASH_HOME/cache/build, else $XDG_CACHE_HOME/sparkflash/build
(~/.cache/sparkflash/build). SPARKFLASH_BUILD_CACHE=dir names another directory;
SPARKFLASH_BUILD_CACHE=off keeps them in the checkout (build/.sparkflash), as does a
cache directory that cannot be created or written.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["build_cache_dir", "prune"]

#: records of one kind kept per directory (temporary trees and toolchain copies of the
#: tests leave records nobody reads again); the least recently written go first
KEEP = 64


def build_cache_dir(fallback: Path) -> Path:
    """The per-user cache directory (created), or `fallback` if it is off or unusable."""
    chosen = os.environ.get("SPARKFLASH_BUILD_CACHE")
    if chosen == "off":
        return fallback
    if chosen:
        d = Path(chosen)
    elif os.environ.get("SPARKFLASH_HOME"):
        d = Path(os.environ["SPARKFLASH_HOME"]) / "cache" / "build"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache" if os.environ.get("HOME") else None)
        if base is None:
            return fallback
        d = Path(base) / "sparkflash" / "build"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return fallback
    return d if os.access(d, os.W_OK | os.X_OK) else fallback


def prune(directory: Path, prefix: str, keep: int = KEEP) -> None:
    """Remove the oldest `prefix`*.json records beyond `keep` (each record is only a
    cache); another process's temporary file is never one of them."""
    try:
        found = [(e.stat().st_mtime_ns, e.path) for e in os.scandir(directory)
                 if e.name.startswith(prefix) and e.name.endswith(".json")]
    except OSError:
        return
    for _, path in sorted(found)[:-keep] if len(found) > keep else []:
        try:
            os.unlink(path)
        except OSError:
            pass
