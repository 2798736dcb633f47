"""`sparkflash reset`: leave DFU mode (the Core resets into its application), or, by serial,
put a running Core into DFU mode (`--dfu`: open its port at 14400 baud, as particle-cli does)."""

from __future__ import annotations

import argparse
import json
import sys

from sparkflash.boards import load_board
from sparkflash.cli.device_opts import add_device_options, one_dfu_backend
from sparkflash.errors import InputError

__all__ = ["DFU_BAUD", "register"]

DFU_BAUD = 14400  # core-firmware: a USB CDC line coding of 14400 baud makes the application enter DFU mode


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("reset", help="leave DFU mode (reset into the application), or --dfu: enter it by serial")
    p.add_argument("--dfu", action="store_true", help="serial: enter DFU mode (opens PORT at 14400 baud)")
    add_device_options(p, vias=("dfu", "serial"))
    p.set_defaults(func=_reset)


def _reset(args: argparse.Namespace) -> int:
    if args.via == "serial" or args.dfu:
        if not args.port:
            raise InputError("reset --dfu needs --port (the Core's serial port while its application runs)")
        from sparkflash.transports.serial_port import open_serial

        link = open_serial(args.port, DFU_BAUD)
        link.close()
        what = f"{args.port}: asked the application to enter DFU mode ({DFU_BAUD} baud)"
    else:
        board = load_board(args.board)
        with one_dfu_backend(args, board) as backend:
            name = backend.device_id()
            backend.select(board.memory(board.firmware_memory).dfu_alt)  # leave starts from dfuIDLE
            backend.leave()
        what = f"{name}: left DFU mode (the Core resets into its application)"
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "message": what}, sort_keys=True))
    else:
        print(what, file=sys.stderr)
    return 0
