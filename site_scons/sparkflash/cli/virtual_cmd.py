"""`sparkflash virtual-core --state DIR`: run a virtual Spark Core until interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from sparkflash.virtual.core import ENDPOINTS, CoreOptions, VirtualCore
from sparkflash.virtual.faults import Faults

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("virtual-core", help="run a virtual Spark Core (serial pty, DfuSe socket, cloud client)")
    p.add_argument("--state", type=Path, required=True, help="state directory (created on first use)")
    p.add_argument("--endpoints", default="serial,dfu", help=f"comma list of {','.join(ENDPOINTS)} (default serial,dfu)")
    p.add_argument("--timing", action="store_true", help="model flash erase/program times (SST25VF016B datasheet)")
    p.add_argument("--baud", type=int, help="model the serial line rate (e.g. 115200)")
    p.add_argument("--no-dfu-poll", action="store_true", help="ignore the bootloader's poll timeouts (fast tests)")
    p.add_argument("--fault", action="append", default=[], help="drop@BYTES, corrupt@BYTE or reset@WRITES")
    p.add_argument("--server", help="cloud: HOST:PORT written to the server-address TLV (with --server-key)")
    p.add_argument("--server-key", type=Path, help="cloud: server public key, DER SPKI (294 bytes)")
    p.add_argument("--json", action="store_true", help="print one JSON line with the endpoints, then run")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    names = tuple(n for n in args.endpoints.split(",") if n)
    for n in names:
        if n not in ENDPOINTS:
            print(f"sparkflash: error: unknown endpoint {n!r} (choose from {', '.join(ENDPOINTS)})", file=sys.stderr)
            return 2
    opts = CoreOptions(timing=args.timing, baud=args.baud, dfu_poll=not args.no_dfu_poll,
                       faults=Faults.parse(args.fault), endpoints=names)
    core = VirtualCore(args.state, opts)
    if args.server_key:
        host, _, port = args.server.rpartition(":") if args.server else ("127.0.0.1", "", "5683")
        core.state.set_server(args.server_key.read_bytes(), host, int(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    core.start()
    info = {"state": str(args.state), "device_id": core.state.info["device_id"], "endpoints": list(names)}
    if "serial" in names:
        info["serial"] = getattr(core.endpoints["serial"], "port", None)
    if "dfu" in names:
        info["dfu"] = f"virtual:{args.state}"
    print(json.dumps(info) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    try:
        while not stop.wait(0.2) and not core.stopped.is_set():
            pass
    finally:
        core.stop()
        if args.json:  # what the faults did, for tools/campaign's "faults landed" count
            f, st = opts.faults, core.state
            fired = {"drop": "drop" in " ".join(args.fault) and f.drop_after is None,
                     "corrupt": "corrupt" in " ".join(args.fault) and f.corrupt_at is None,
                     "reset": "reset" in " ".join(args.fault) and None in (st.internal.reset_after_programs,
                                                                           st.external.reset_after_programs)}
            print(json.dumps({"event": "stopped", "fired": [k for k, v in fired.items() if v], "rx_bytes": f.rx_count,
                              "programs": st.internal.program_count + st.external.program_count}), flush=True)
    return 0
