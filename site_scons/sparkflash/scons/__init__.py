"""sparkflash's SCons tools, shipped inside the package so a user's SConstruct can load them.

SCons finds tool modules by directory, not by import name; `toolpath()` is that directory:

    import sparkflash.scons
    env = Environment(tools=[], toolpath=[sparkflash.scons.toolpath()])
    env.Tool("spark_core", arguments=ARGUMENTS)
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["toolpath"]


def toolpath() -> str:
    """The directory holding arm_gcc, spark_core, sparkflash_release and sparkflash_deploy."""
    return str(Path(__file__).resolve().parent)
