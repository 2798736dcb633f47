"""The device options shared by `read`, `erase`, `reset` and `plan`, and opening exactly one DFU device."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from sparkflash.boards import Board
from sparkflash.deploy.dfu import DfuBackend, open_backends
from sparkflash.errors import InputError

__all__ = ["add_device_options", "one_dfu_backend"]


def add_device_options(p: argparse.ArgumentParser, *, vias: tuple[str, ...] = ("dfu",)) -> None:
    p.add_argument("--via", choices=vias, default="dfu", help="transport (default dfu)")
    p.add_argument("-d", "--device", action="append", default=[],
                   help="dfu: VID:PID, usb:BUS-PORT or virtual:STATE_DIR (default: the one 1d50:607f)")
    p.add_argument("--backend", choices=["pyusb", "dfu-util"], default="pyusb", help="dfu: how to reach USB")
    if "serial" in vias:
        p.add_argument("-p", "--port", help="serial: port path or pyserial URL")
        p.add_argument("--baud", type=int, default=115200, help="serial: baud rate (default 115200)")
    p.add_argument("--timeout", type=float, default=None, help="per-exchange timeout in seconds")
    p.add_argument("--board", default="spark-core", help="board memory map (default spark-core)")
    p.add_argument("--json", action="store_true", help="one JSON result line on stdout")


@contextmanager
def one_dfu_backend(args: argparse.Namespace, board: Board) -> Iterator[DfuBackend]:
    """The single DFU device these commands act on; refuses a choice among several."""
    if len(args.device) > 1:
        raise InputError(f"this command acts on one device; got {len(args.device)} --device values")
    backends = open_backends(args, board)
    try:
        if len(backends) > 1:
            raise InputError(f"{len(backends)} DFU devices found; pick one with --device usb:BUS-PORT "
                             "(see `sparkflash devices`)")
        yield backends[0]
    finally:
        for b in backends:
            b.close()
