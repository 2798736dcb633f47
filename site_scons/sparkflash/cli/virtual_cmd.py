"""`sparkflash virtual-core --state DIR`: run a virtual Spark Core until interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from sparkflash.cli.output import hexint, listing
from sparkflash.errors import InputError
from sparkflash.virtual.core import ENDPOINTS, CoreOptions, VirtualCore
from sparkflash.virtual.faults import Faults

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("virtual-core", help="run a virtual Spark Core (serial pty, DfuSe socket, cloud client)",
                       description="Run a virtual Spark Core until interrupted: a serial pty in listening mode, "
                                   "a DfuSe endpoint (--device virtual:STATE_DIR) and a cloud client.")
    p.add_argument("--state", type=Path, required=True, help="state directory (created on first use)")
    p.add_argument("--endpoints", default="serial,dfu", help=f"comma list of {','.join(ENDPOINTS)} (default serial,dfu)")
    p.add_argument("--timing", action="store_true", help="model flash erase/program times (SST25VF016B datasheet)")
    p.add_argument("-b", "--baud", type=int, help="model the serial line rate (e.g. 115200)")
    p.add_argument("--no-dfu-poll", action="store_true", help="ignore the bootloader's poll timeouts (fast tests)")
    p.add_argument("--fault", action="append", default=[], help="drop@BYTES, corrupt@BYTE or reset@WRITES")
    p.add_argument("--server", help="cloud: HOST:PORT written to the server-address TLV (with --server-key)")
    p.add_argument("--server-key", type=Path, help="cloud: server public key, DER SPKI (294 bytes)")
    p.add_argument("--usb", action="store_true",
                   help="also appear to libusb programs as USB device 1d50:607f (umockdev; Linux, dynamically linked "
                        "clients: run them with the printed LD_PRELOAD and UMOCKDEV_DIR)")
    p.add_argument("--cloud-dialect", choices=["os", "ccl"], default="os",
                   help="cloud: Device OS (default) or 0.3.x core-communication-lib behaviour")
    p.add_argument("--cloud-save-begin", action="store_true",
                   help="cloud, ccl: the flasher_additions library (SaveBegin stores files at any address)")
    p.add_argument("--serial-mode", choices=["agent", "stock", "stock-save"], default="agent",
                   help="serial: our agent (default), stock listening mode, or an app in serialSaveFile")
    p.add_argument("--stock-save-address", type=hexint, default=0x80000,
                   help="serial, --serial-mode stock-save: the address the app saves to (default 0x80000)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    names = tuple(n for n in args.endpoints.split(",") if n)
    for n in names:
        if n not in ENDPOINTS:
            raise InputError(f"--endpoints: unknown endpoint {n!r} (choose from {', '.join(ENDPOINTS)})")
    opts = CoreOptions(timing=args.timing, baud=args.baud, dfu_poll=not args.no_dfu_poll,
                       faults=Faults.parse(args.fault), endpoints=names,
                       extra={"cloud_dialect": args.cloud_dialect, "cloud_save_begin": args.cloud_save_begin,
                              "serial_mode": args.serial_mode, "stock_save_address": args.stock_save_address})
    core = VirtualCore(args.state, opts)
    if args.server_key:
        host, _, port = args.server.rpartition(":") if args.server else ("127.0.0.1", "", "5683")
        if not host or not port.isdigit():
            raise InputError(f"--server {args.server!r}: expected HOST:PORT")
        try:
            key = args.server_key.read_bytes()
        except OSError as e:
            raise InputError(f"--server-key {args.server_key}: {e.strerror}") from None
        core.state.set_server(key, host, int(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    core.start()
    info = {"state": str(args.state), "device_id": core.state.info["device_id"], "endpoints": list(names)}
    if "serial" in names:
        info["serial"] = getattr(core.endpoints["serial"], "port", None)
    if "dfu" in names:
        info["dfu"] = f"virtual:{args.state}"
    bridge = None
    if args.usb:
        from sparkflash.errors import SparkflashError
        from sparkflash.virtual.usb_attach import UsbBridge

        if "dfu" not in names:
            core.stop()
            print("sparkflash: error: --usb needs the dfu endpoint", file=sys.stderr)
            return 2
        try:
            bridge = UsbBridge(args.state).start()
        except SparkflashError as e:
            core.stop()
            print(f"sparkflash: error: {e}", file=sys.stderr)
            return e.exit_code
        info["usb"] = {"device": "1d50:607f", "path": f"usb:{bridge.info['path']}", "env": bridge.env()}
    if args.json:
        print(json.dumps(info), flush=True)
    else:
        print("\n".join(f"{k}: {listing(v) if isinstance(v, list) else v}" for k, v in info.items() if k != "usb"),
              flush=True)
        if bridge is not None:
            env = " ".join(f"{k}={v}" for k, v in bridge.env().items())
            print(f"usb: 1d50:607f at usb:{bridge.info['path']}; run libusb programs as: {env} dfu-util -l", flush=True)
    try:
        while not stop.wait(0.2) and not core.stopped.is_set():
            pass
    finally:
        if bridge is not None:
            bridge.stop()
        core.stop()
        if args.json:  # what the faults did, for tools/campaign's "faults landed" count
            f, st = opts.faults, core.state
            fired = {"drop": "drop" in " ".join(args.fault) and f.drop_after is None,
                     "corrupt": "corrupt" in " ".join(args.fault) and f.corrupt_at is None,
                     "reset": "reset" in " ".join(args.fault) and None in (st.internal.reset_after_programs,
                                                                           st.external.reset_after_programs)}
            print(json.dumps({"event": "stopped", "fired": [k for k, v in fired.items() if v], "rx_bytes": f.rx_count,
                              "programs": st.internal.program_count + st.external.program_count,
                              # `--fault reset@N` arms each flash's own count: N past the larger never fires
                              "programs_max_per_flash": max(st.internal.program_count, st.external.program_count)}),
                  flush=True)
    return 0
