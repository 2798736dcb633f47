"""Leave a node's .sconsign entry alone when this run would store the same one.

SCons stores the entry of every node it visits, so every directory's entries are pickled
and the whole .sconsign.dblite is rewritten after each build (~11 ms after a one-file
edit of spark_11: 33 directories, ~270 entries, for the 3 that changed). A node that was
not rebuilt and whose hash, mtime and size are those recorded would get back what it
has: its entry is not touched, nor its directory's, so only directories with a changed
entry are written again (none after a no-op). Nodes SCons built are always stored.

What stays older than it could be is only what the entry says of the node's inputs (the
children's hashes and mtimes as they were when it was last built): SCons decides by
content (Decider("content")), so a recorded input that differs from the current one can
only make it build again, never skip a build; and sparkflash.scons.stored_hashes trusts
a recorded hash only for a file whose own entry has its current mtime.
"""

from __future__ import annotations

from typing import Any

import SCons.Node

__all__ = ["install"]

_FIELDS = ("csig", "timestamp", "size")


def _as_recorded(node: Any) -> bool:
    """SCons did not build the node in this run and its hash, mtime and size equal its
    recorded ones. (SCons stores an up-to-date node before it marks it so, then again; the
    .map, second target of the link, keeps no state.)"""
    if node.get_state() in (SCons.Node.executing, SCons.Node.executed, SCons.Node.failed):
        return False
    old = getattr(node.get_stored_info(), "ninfo", None)
    new = node.get_ninfo()
    return old is not None and getattr(old, "csig", None) is not None and all(
        getattr(old, f, None) == getattr(new, f, None) for f in _FIELDS)


def install() -> None:
    """Store a file node's entry only when it changed (SCons' own store otherwise)."""
    store = SCons.Node.store_info_map[1]
    if getattr(store, "sparkflash", False):
        return

    def store_changed(node: Any) -> None:
        if not _as_recorded(node):
            store(node)

    store_changed.sparkflash = True  # type: ignore[attr-defined]
    SCons.Node.store_info_map[1] = store_changed
