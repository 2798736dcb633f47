# PYTHON_ARGCOMPLETE_OK  (argcomplete's global completion looks for this marker)
"""The `sparkflash` command line: the only place that prints and turns errors into exit codes.

Each command group lives in its own module with `register(subparsers)`; a command's
handler takes the parsed args and returns an exit status. Every command also gets
--json, -q and -v here; under --json every outcome ends in one result line on stdout,
errors included: {"event": "result", "ok": false, "error": ..., "exit_code": N}.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from sparkflash import __version__
from sparkflash.cli.output import add_common_options, error_result
from sparkflash.errors import SparkflashError

__all__ = ["main", "build_parser", "COMMAND_MODULES", "EXIT_CODES"]

COMMAND_MODULES = (
    "sparkflash.cli.keys_cmd",
    "sparkflash.cli.manifest_cmd",
    "sparkflash.cli.deploy_cmd",
    "sparkflash.cli.virtual_cmd",
    "sparkflash.cli.dfu_cmd",
    "sparkflash.cli.cloud_cmd",
    "sparkflash.cli.rollout_cmd",
    "sparkflash.cli.publish_cmd",
    "sparkflash.cli.plan_cmd",
    "sparkflash.cli.read_cmd",
    "sparkflash.cli.erase_cmd",
    "sparkflash.cli.reset_cmd",
    "sparkflash.cli.devices_cmd",
    "sparkflash.cli.monitor_cmd",
)

# The exit codes every command uses, by cause (README "Exit codes"; tests/cli/test_exit_codes.py).
EXIT_CODES = {
    0: "success: every region verified (or already right)",
    1: "an unexpected internal error, a bug (please report it)",
    2: "bad input: arguments, files, manifests, keys, names (channel, device, region)",
    3: "verification failed: a signature, a digest or a read-back did not match",
    4: "device or transport error: no device, port or USB failure, device offline",
    5: "protocol error: the device or server broke the protocol",
    6: "S3 error: the bucket or object store failed",
    130: "interrupted (Ctrl-C)",
}

_json_requested = False  # set from argv before parsing, so argparse's own errors honour --json


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported as a JSON result line under --json (exit 2)."""

    def error(self, message: str) -> NoReturn:
        if _json_requested:
            print(json.dumps(error_result(f"{self.prog}: {message}", 2), sort_keys=True), flush=True)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _leaves(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that run a command; every sub-command placeholder is named COMMAND on the way."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [p]
    for s in subs:
        s.metavar = "COMMAND"
    return [leaf for s in subs for child in dict.fromkeys(s.choices.values()) for leaf in _leaves(child)]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="sparkflash", description="Build, sign, publish and flash Spark Core releases.",
               epilog="Exit codes: " + "; ".join(f"{k} {v.split(':')[0]}" for k, v in EXIT_CODES.items()))
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
    for leaf in _leaves(p):
        add_common_options(leaf)
    return p


def _logging(args: argparse.Namespace) -> None:
    verbose = getattr(args, "verbose", 0)
    level = logging.DEBUG if verbose is not True and verbose >= 2 else logging.INFO if verbose else logging.WARNING
    if getattr(args, "quiet", False):
        level = logging.ERROR
    logging.basicConfig(level=level, stream=sys.stderr, format="%(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    global _json_requested
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        import argcomplete
    except ImportError:  # completion is a convenience, never a reason to fail
        pass
    else:
        argcomplete.autocomplete(parser)
    _json_requested = "--json" in args_list
    args = parser.parse_args(args_list)
    as_json = bool(getattr(args, "json", False))
    _logging(args)
    try:
        return int(args.func(args))
    except SparkflashError as e:
        return _fail(as_json, str(e), e.exit_code, type(e).__name__)
    except OSError as e:  # not wrapped by the library: a port/USB failure (4), else a path (bad input, 2)
        where = f"{e.filename}: " if e.filename else ""
        device = type(e).__module__.split(".")[0] in ("serial", "usb")
        return _fail(as_json, f"{where}{e.strerror or e}", 4 if device else 2, type(e).__name__)
    except KeyboardInterrupt:
        return _fail(as_json, "interrupted", 130, "KeyboardInterrupt")


def _fail(as_json: bool, message: str, code: int, kind: str) -> int:
    print(f"sparkflash: error: {message}", file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps(error_result(message, code, kind), sort_keys=True), flush=True)
    return code
