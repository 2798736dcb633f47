"""`sparkflash erase ADDR LEN`: erase whole sectors by DFU, verified by reading them back."""

from __future__ import annotations

import argparse
import json
import sys

from sparkflash.boards import load_board
from sparkflash.cli.device_opts import add_device_options, one_dfu_backend
from sparkflash.cli.output import hexint
from sparkflash.deploy.dfu_ops import erase_memory, erase_range

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("erase", help="erase a sector-aligned flash range (DFU), verified blank")
    p.add_argument("address", type=hexint, help="sector-aligned start, e.g. 0x80000")
    p.add_argument("length", type=hexint, help="a multiple of the sector size (4 KiB external, 1 KiB internal)")
    p.add_argument("--allow-protected", action="store_true", help="allow erasing a protected area (keys, bootloader)")
    add_device_options(p)
    p.set_defaults(func=_erase)


def _erase(args: argparse.Namespace) -> int:
    board = load_board(args.board)
    erase_memory(board, args.address, args.length, allow_protected=args.allow_protected)  # before any device
    with one_dfu_backend(args, board) as backend:
        rep = erase_range(backend, board, args.address, args.length, allow_protected=args.allow_protected)
    doc = {"address": args.address, "size": args.length, "sectors": rep.sectors, "already_blank": rep.already_blank,
           "status": "verified"}
    if args.json:
        print(json.dumps({"event": "result", "ok": True, **doc}, sort_keys=True))
    else:
        print(f"erased 0x{args.address:08x}+{args.length:#x}: {rep.sectors} sectors "
              f"({rep.already_blank} already blank), read back blank", file=sys.stderr)
    return 0
