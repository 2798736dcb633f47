"""sparkflash's SCons tools, shipped inside the package so a user's SConstruct can load them.

SCons finds tool modules by directory, not by import name; `toolpath()` is that directory.
The whole pipeline (firmware, manifest, sign, publish, release, flash-ext, flash):

    import sparkflash.scons
    env = Environment(tools=["sparkflash_all"], toolpath=[sparkflash.scons.toolpath()])

or one tool at a time, wiring the graph yourself (as this repository's SConstruct does):

    env = Environment(tools=[], toolpath=[sparkflash.scons.toolpath()])
    env.Tool("spark_core", arguments=ARGUMENTS)
"""

from __future__ import annotations

import os

__all__ = ["toolpath"]


def toolpath() -> str:
    """The directory holding arm_gcc, spark_core, sparkflash_release, sparkflash_deploy and sparkflash_all."""
    return os.path.dirname(os.path.realpath(__file__))  # not pathlib: sparkflash-scons imports this package first
