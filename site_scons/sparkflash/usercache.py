"""The per-user folder where builds keep what they learnt (sparkflash.firmware.buildcache).

Only `os` is imported: sparkflash-scons looks here for its compile-ahead record before
SCons loads (pathlib alone would cost it 11 ms).
"""

from __future__ import annotations

import os

__all__ = ["build_records_folder"]


def build_records_folder() -> str | None:
    """$SPARKFLASH_BUILD_CACHE, else $SPARKFLASH_HOME/cache/build, else
    $XDG_CACHE_HOME/sparkflash/build (~/.cache/sparkflash/build); None when
    SPARKFLASH_BUILD_CACHE=off or there is no home to put it in."""
    chosen = os.environ.get("SPARKFLASH_BUILD_CACHE")
    if chosen == "off":
        return None
    if chosen:
        return chosen
    if os.environ.get("SPARKFLASH_HOME"):
        return os.path.join(os.environ["SPARKFLASH_HOME"], "cache", "build")
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.join(os.environ["HOME"], ".cache") if os.environ.get("HOME") else None)
    return os.path.join(base, "sparkflash", "build") if base else None
