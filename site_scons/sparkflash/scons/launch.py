"""`sparkflash-scons ARGS`: `scons ARGS`, with the due compiles started before SCons loads.

SCons takes ~0.08 s to import before site_scons/site_init.py can start an early compile;
make has its compile running after ~0.03 s. This launcher starts the compiles the last
build's record makes due ~0.02 s after it is run (sparkflash.scons.early_compile, which
imports nothing heavy), then runs SCons' own entry point in the same process (as the `scons`
script does); site_init then hands the compiles (and the record, read once) to SCons' SPAWN
(sparkflash.scons.compile_ahead), which uses one only where it would run that very command
on the very same inputs.
Everything else is plain scons: same arguments, output and exit status. At the end, once
the exit handlers have run and the output is flushed, it leaves without tearing the
interpreter down (freeing SCons' graph of ~10^5 objects: ~15 ms of a no-op) when nothing can
be lost that way: no thread left that exit would wait for, no file open for writing but
those it was started with.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import sys

from sparkflash.scons import early_compile

TYPE_CHECKING = False  # typing (and the re it imports) would cost the compiles' start 10-15 ms
if TYPE_CHECKING:
    from typing import NoReturn

#: options that change the directory, the SConstruct or site_scons: the record and site_init
#: found from the current directory may not be the build's, so nothing starts early
_ELSEWHERE = ("-C", "--directory", "-f", "--file", "--makefile", "--sconstruct", "-u", "--up", "--search-up", "-U",
              "-D", "--site-dir", "--no-site-dir")


def main() -> None:
    argv = sys.argv[1:]
    if (os.environ.get("SPARKFLASH_COMPILE_AHEAD") != "off" and os.path.isfile("site_scons/site_init.py")
            and not any(a.startswith(_ELSEWHERE) for a in argv)):
        early_compile.launched = (argv, early_compile.start(argv, os.getcwd()))  # for site_init, in this process
    inherited = _open_for_writing()
    import SCons.Script  # here, not at the top: the compiles above start before SCons loads

    try:
        SCons.Script.main()
    except SystemExit as e:
        _exit(e.code, inherited)
    _exit(0, inherited)


def _exit(code: object, inherited: dict[int, tuple[int, int]] | None) -> NoReturn:
    """Exit as SystemExit(code) would, skipping the interpreter's teardown where safe."""
    import threading  # loaded by SCons by now
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # each runs once: they are gone from the registry afterwards
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    threads = any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())
    now = _open_for_writing()
    if inherited is not None and now is not None and now.items() <= inherited.items() and not threads:
        os._exit(code or 0)
    sys.exit(code)


def _open_for_writing() -> dict[int, tuple[int, int]] | None:
    """The descriptors open for writing and the file of each (a Python file object on one
    may still hold data that it writes only when freed); None if they cannot be listed."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return None
    out = {}
    for fd in fds:
        try:
            if fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_WRONLY | os.O_RDWR):
                st = os.fstat(fd)
                out[fd] = (st.st_dev, st.st_ino)
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return out


if __name__ == "__main__":
    main()
