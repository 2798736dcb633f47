"""The `sparkflash` command line: the only place that prints and turns errors into exit codes.

Each command group lives in its own module with `register(subparsers)`; a command's
handler takes the parsed args and returns an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sparkflash import __version__
from sparkflash.errors import SparkflashError

__all__ = ["main", "COMMAND_MODULES"]

COMMAND_MODULES = (
    "sparkflash.cli.keys_cmd",
    "sparkflash.cli.manifest_cmd",
    "sparkflash.cli.deploy_cmd",
    "sparkflash.cli.virtual_cmd",
    "sparkflash.cli.dfu_cmd",
    "sparkflash.cli.cloud_cmd",
    "sparkflash.cli.publish_cmd",
    "sparkflash.cli.plan_cmd",
    "sparkflash.cli.read_cmd",
    "sparkflash.cli.erase_cmd",
    "sparkflash.cli.reset_cmd",
    "sparkflash.cli.devices_cmd",
    "sparkflash.cli.monitor_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparkflash", description="Build, sign, publish and flash Spark Core releases.")
    p.add_argument("--version", action="version", version=f"sparkflash {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue  # a command group not built yet
        mod.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SparkflashError as e:
        print(f"sparkflash: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("sparkflash: interrupted", file=sys.stderr)
        return 130
