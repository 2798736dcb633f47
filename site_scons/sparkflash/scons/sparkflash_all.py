"""SCons tool: the whole pipeline in one line of a user's SConstruct.

    import sparkflash.scons
    env = Environment(tools=["sparkflash_all"], toolpath=[sparkflash.scons.toolpath()])

loads spark_core (firmware from CORE_FIRMWARE=path, default examples/core-firmware),
builds it by default, then sparkflash_release (`manifest`, `sign`) and sparkflash_deploy
(`publish`, `release`, `flash-ext`, `flash`) over that firmware, and refuses unknown
`NAME=value` arguments. env["SPARK_CORE_FIRMWARE"] holds the firmware nodes (elf, bin,
hex, map, size, dir). Load it last: it checks the arguments every tool declared so far.

Named sparkflash_all, not sparkflash: SCons registers a toolpath module in sys.modules
under the tool's name, which would replace the sparkflash package itself.
"""

from __future__ import annotations

from typing import Any

import SCons.Script


def generate(env: Any, arguments: dict[str, str] | None = None, **kw: Any) -> None:
    """The repository's SConstruct, as a tool (arguments default to the command line's)."""
    args = dict(SCons.Script.ARGUMENTS) if arguments is None else arguments
    SCons.Script.DefaultEnvironment(tools=[])  # Default()/Help() must not probe host compilers
    env.Tool("spark_core", arguments=args)
    SCons.Script.Help(env["SPARK_CORE_VARIABLES"].GenerateHelpText(env), append=True)
    firmware = env.SparkCoreFirmware()
    env["SPARK_CORE_FIRMWARE"] = firmware
    env["SPARKFLASH_FIRMWARE_BIN"] = firmware["bin"]
    env["SPARKFLASH_ELF"] = firmware["elf"]
    env["SPARKFLASH_VARIANT_DIR"] = firmware["dir"]
    SCons.Script.Default(*firmware["first"], firmware["bin"], firmware["hex"], firmware["size"])
    env.Tool("sparkflash_release")
    env.Tool("sparkflash_deploy")
    env.CheckArguments(args)


def exists(env: Any) -> bool:
    return True
