"""Leave a finished scons process without Python's interpreter teardown.

After SCons has built, written its .sconsign and run every exit handler, Python still
tears the interpreter down: it frees every module, node and .sconsign entry one by one
and runs a last full garbage collection over them, 20-50 ms of a no-op or one-file
build in which nothing is written any more. `install()` ends the process there with
os._exit and SCons' own exit status, but only when SCons' main() reached its normal end
(the status it passes to sys.exit is then `SCons.Script.Main.exit_status`); any other
way out (an error SCons reports with sys.exit(2), Ctrl-C, an exception) keeps Python's
normal exit. Open files are closed by then: SCons writes .sconsign with `with open`,
our records use write_text.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable

import SCons.exitfuncs
import SCons.Script.Main
import SCons.Taskmaster

__all__ = ["install"]

_reached_end: list[bool] = []


def _mark_end(original: Callable[[], None]) -> Callable[[], None]:
    def dump_stats() -> None:
        _reached_end.append(True)  # main() calls this after its error handling, just before sys.exit(exit_status)
        original()

    return dump_stats


def _leave() -> None:
    status = SCons.Script.Main.exit_status
    if not _reached_end or not isinstance(status, int):
        return
    SCons.exitfuncs._run_exitfuncs()  # registered before this handler: it would run after it
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            return  # a stream we cannot flush: let Python report it on its normal way out
    os._exit(status)


def install() -> None:
    """Once per process; a no-op if already installed."""
    if getattr(SCons.Taskmaster, "_sparkflash_fast_exit", False):
        return
    SCons.Taskmaster._sparkflash_fast_exit = True
    SCons.Taskmaster.dump_stats = _mark_end(SCons.Taskmaster.dump_stats)
    atexit.register(_leave)
