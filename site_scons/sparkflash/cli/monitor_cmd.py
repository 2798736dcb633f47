"""`sparkflash monitor PORT`: a serial terminal on the Core's port (pyserial's miniterm).

Ctrl-] quits, Ctrl-T Ctrl-H shows miniterm's menu. The port is opened like every other
command opens it (pyserial URLs work too), so the virtual Core's STATE/tty is a valid PORT.
"""

from __future__ import annotations

import argparse
import sys

from serial.tools.miniterm import Miniterm

import serial
from sparkflash.errors import DeviceGone

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("monitor", help="serial terminal on a Core's port (pyserial miniterm; Ctrl-] quits)")
    p.add_argument("port", help="port path or pyserial URL (e.g. /dev/ttyACM0, STATE/tty)")
    p.add_argument("-b", "--baud", type=int, default=9600, help="baud rate (default 9600, the Core's Serial.begin)")
    p.add_argument("--eol", choices=["CR", "LF", "CRLF"], default="CRLF", help="line ending sent for Enter")
    p.add_argument("--echo", action="store_true", help="echo what you type locally")
    p.add_argument("--raw", action="store_true", help="show bytes as received (no control-character filter)")
    p.set_defaults(func=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    try:
        port = serial.serial_for_url(args.port, args.baud, do_not_open=True)
        port.open()
    except (serial.SerialException, OSError, ValueError) as e:
        raise DeviceGone(f"{args.port}: cannot open ({e}); is the Core plugged in and running?") from e
    term = Miniterm(port, echo=args.echo, eol=args.eol.lower(), filters=["direct" if args.raw else "default"])
    term.exit_character = "\x1d"  # Ctrl-]
    term.menu_character = "\x14"  # Ctrl-T
    term.set_rx_encoding("UTF-8")
    term.set_tx_encoding("UTF-8")
    print(f"--- sparkflash monitor on {args.port} {args.baud} baud --- Ctrl-] quits, Ctrl-T Ctrl-H help ---",
          file=sys.stderr)
    term.start()
    try:
        term.join(True)
    except KeyboardInterrupt:
        pass
    term.join()
    term.close()
    return 0
