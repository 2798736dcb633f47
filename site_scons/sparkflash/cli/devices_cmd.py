"""`sparkflash devices`: every Core this host can reach, one line each (or `--json`).

DFU-mode Cores are USB devices 1d50:607f (pyusb), running Cores are USB serial ports
1d50:607d (pyserial's list_ports), cloud devices come from `sparkflash cloud`'s admin API
(`--cloud URL`), and `--virtual STATE_DIR` adds virtual Cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparkflash.boards import load_board
from sparkflash.errors import SparkflashError

__all__ = ["cloud_devices", "dfu_devices", "register", "serial_ports", "virtual_devices"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("devices", help="list Cores: USB DFU, USB serial, cloud (--cloud) and virtual (--virtual)")
    p.add_argument("--cloud", help="admin API URL of `sparkflash cloud` (e.g. http://127.0.0.1:8683)")
    p.add_argument("--cloud-token", type=Path, metavar="FILE",
                   help="the admin API token file (KEY.admin-token beside the server key; default $SPARKFLASH_CLOUD_TOKEN_FILE)")
    p.add_argument("--virtual", type=Path, action="append", default=[], help="a virtual Core's state directory")
    p.add_argument("--board", default="spark-core", help="board memory map (default spark-core)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=_devices)


def dfu_devices(vid: int, pid: int) -> list[dict[str, Any]]:
    from sparkflash.transports.usb_device import find_devices, usb_path

    out = []
    for d in find_devices(vid, pid):
        try:
            serial = d.serial_number  # needs the device opened: udev permissions
        except Exception:  # noqa: BLE001 - pyusb raises USBError or ValueError without permission
            serial = None
        out.append({"kind": "dfu", "device": f"usb:{usb_path(d)}", "id": serial, "usb": f"{vid:04x}:{pid:04x}"})
    return out


def serial_ports(vid: int, pid: int) -> list[dict[str, Any]]:
    from serial.tools import list_ports

    return [{"kind": "serial", "device": p.device, "id": p.serial_number, "usb": f"{vid:04x}:{pid:04x}",
             "description": p.description}
            for p in sorted(list_ports.comports(), key=lambda p: p.device) if p.vid == vid and p.pid == pid]


def cloud_devices(url: str, token_file: Path | None) -> list[dict[str, Any]]:
    from sparkflash.deploy.ota import AdminClient, read_token

    doc = AdminClient(url, read_token(token_file), timeout=10.0).call("GET", "/v1/devices")
    return [{"kind": "cloud", "device": d["id"], "id": d["id"], "connected": d.get("connected"),
             "peer": d.get("peer")} for d in doc.get("devices", [])]


def virtual_devices(dirs: list[Path]) -> list[dict[str, Any]]:
    out = []
    for d in dirs:
        info_path = d / "core.json"
        ident = None
        try:
            ident = json.loads(info_path.read_text()).get("device_id")
        except (OSError, ValueError):
            pass
        if (d / "dfu.sock").exists():
            out.append({"kind": "dfu", "device": f"virtual:{d}", "id": ident, "usb": "virtual"})
        if (d / "tty").exists():
            out.append({"kind": "serial", "device": str(d / "tty"), "id": ident, "usb": "virtual"})
    return out


def _devices(args: argparse.Namespace) -> int:
    board = load_board(args.board)
    found: list[dict[str, Any]] = []
    problems: list[str] = []
    codes: list[int] = []
    sources: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = [
        ("USB DFU", lambda: dfu_devices(*board.usb["dfu"])),
        ("USB serial", lambda: serial_ports(*board.usb["serial"])),
        ("cloud", lambda: cloud_devices(args.cloud, args.cloud_token) if args.cloud else []),
        ("virtual", lambda: virtual_devices(args.virtual)),
    ]
    for what, fn in sources:
        try:
            found += fn()
        except SparkflashError as e:
            problems.append(f"{what}: {e}")
            codes.append(e.exit_code)
    code = codes[0] if problems and not found else 0  # a source that failed matters only when nothing was found
    if args.json:
        doc: dict[str, Any] = {"event": "result", "ok": code == 0, "devices": found, "problems": problems,
                               "exit_code": code}
        if code:
            doc["error"] = "; ".join(problems)
            print(f"sparkflash: error: {doc['error']}", file=sys.stderr)
        print(json.dumps(doc, sort_keys=True))
    else:
        for d in found:
            extra = f" connected={d['connected']}" if "connected" in d else ""
            print(f"{d['kind']:<7} {d['device']:<40} {d['id'] or '-'}{extra}")
        for p in problems:
            print(f"sparkflash: warning: {p}", file=sys.stderr)
        if not found:
            print("no Cores found (DFU mode: hold MODE, tap RESET; serial: the Core's USB port while it runs)",
                  file=sys.stderr)
    return code
