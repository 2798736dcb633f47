"""`sparkflash read ADDR LEN -o FILE`: a flash range to a file, by DFU UPLOAD.

Serial cannot read: neither stock firmware nor our device agent has a command that sends
flash contents back (the agent answers digests only: SUM/SUMS), so `--via serial` is
refused with what to use instead.
"""

from __future__ import annotations

import argparse
import json
import sys

from sparkflash.boards import load_board
from sparkflash.cli.device_opts import add_device_options, one_dfu_backend
from sparkflash.cli.output import hexint
from sparkflash.deploy.dfu_ops import memory_for, read_range
from sparkflash.errors import InputError
from sparkflash.manifest.release import atomic_write, digests

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("read", help="read a flash range to a file (DFU upload)")
    p.add_argument("address", type=hexint, help="start, e.g. 0x80000 (external) or 0x08005000 (internal)")
    p.add_argument("length", type=hexint, help="bytes, e.g. 0x1000")
    p.add_argument("-o", "--out", dest="output", required=True, metavar="FILE", help="file to write (a single - = stdout)")
    add_device_options(p, vias=("dfu", "serial"))
    p.set_defaults(func=_read)


def _read(args: argparse.Namespace) -> int:
    if args.via == "serial":
        raise InputError("read --via serial: the Core's serial protocols cannot send flash contents back "
                         "(stock: none; our agent: digests only, SUM/SUMS); put the Core in DFU mode and use --via dfu")
    board = load_board(args.board)
    memory_for(board, args.address, args.length, what=f"read 0x{args.address:08x}+{args.length}")  # before any device
    with one_dfu_backend(args, board) as backend:
        data = read_range(backend, board, args.address, args.length)
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        from pathlib import Path

        atomic_write(Path(args.output), data)
    sha, crc = digests(data)
    doc = {"address": args.address, "size": len(data), "sha256": sha, "crc32": crc, "output": args.output}
    if args.json and args.output != "-":
        print(json.dumps({"event": "result", "ok": True, **doc}, sort_keys=True))
    else:
        print(f"read 0x{args.address:08x}+{len(data)} -> {args.output} (sha256 {sha[:16]}…, crc32 {crc:08x})",
              file=sys.stderr)
    return 0
