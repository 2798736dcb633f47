"""`sparkflash-scons ARGS`: `scons ARGS`, with the due compiles started before SCons loads.

SCons takes ~0.08 s to import before site_scons/site_init.py can start an early compile;
make has its compile running after ~0.03 s. This launcher starts the compiles the last
build's record makes due ~0.02 s after it is run (sparkflash.scons.early_compile, which
imports nothing heavy), then runs SCons' own entry point in the same process (as the `scons`
script does); site_init then hands the compiles (and the record, read once) to SCons' SPAWN
(sparkflash.scons.compile_ahead), which uses one only where it would run that very command
on the very same inputs.
Everything else is plain scons: same arguments, output and exit status.
"""

from __future__ import annotations

import os
import sys

from sparkflash.scons import early_compile

#: options that change the directory, the SConstruct or site_scons: the record and site_init
#: found from the current directory may not be the build's, so nothing starts early
_ELSEWHERE = ("-C", "--directory", "-f", "--file", "--makefile", "--sconstruct", "-u", "--up", "--search-up", "-U",
              "-D", "--site-dir", "--no-site-dir")


def main() -> None:
    argv = sys.argv[1:]
    if (os.environ.get("SPARKFLASH_COMPILE_AHEAD") != "off" and os.path.isfile("site_scons/site_init.py")
            and not any(a.startswith(_ELSEWHERE) for a in argv)):
        early_compile.launched = (argv, early_compile.start(argv, os.getcwd()))  # for site_init, in this process
    import SCons.Script  # here, not at the top: the compiles above start before SCons loads

    SCons.Script.main()


if __name__ == "__main__":
    main()
