"""`sparkflash deploy SOURCE --via dfu|serial|ota` and `sparkflash flash --address A FILE`.

SOURCE is a release manifest path (blobs beside it) or an s3:// release URL. Each
transport module (`sparkflash.deploy.<via>`) provides:

    deploy(args, release, regions, on_event, ledger) -> list[DeployResult]

using the shared transport options below, so the CLI stays one thin loop.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
from pathlib import Path
from typing import Any

from sparkflash.boards import load_board
from sparkflash.cli.output import Reporter, hexint
from sparkflash.deploy.base import DeployResult
from sparkflash.deploy.run import Ledger, select_regions
from sparkflash.errors import InputError
from sparkflash.manifest.keys import TrustStore
from sparkflash.manifest.model import Manifest, Region
from sparkflash.manifest.release import Release, digests, open_release, store_blob

__all__ = ["register", "VIA_MODULES", "open_source", "adhoc_release"]

VIA_MODULES = {
    "dfu": "sparkflash.deploy.dfu",
    "serial": "sparkflash.deploy.serial_ymodem",
    "ota": "sparkflash.deploy.ota",
}


def _transport_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--via", choices=sorted(VIA_MODULES), required=True, help="transport")
    t = p.add_argument_group("transport options")
    t.add_argument("--port", help="serial: port path or pyserial URL")
    t.add_argument("--baud", type=int, default=115200, help="serial: baud rate (default 115200)")
    t.add_argument("--device", action="append", default=[],
                   help="dfu: VID:PID, usb:BUS-PORT or virtual:STATE_DIR; ota: device id (repeatable)")
    t.add_argument("--backend", choices=["pyusb", "dfu-util"], default="pyusb", help="dfu: how to reach USB")
    t.add_argument("--no-skip", action="store_true", help="dfu: rewrite sectors even if unchanged")
    t.add_argument("--leave", action="store_true", help="dfu: leave DFU mode (reset) after writing")
    t.add_argument("--cloud", default="http://127.0.0.1:8683", help="ota: admin API URL of `sparkflash cloud`")
    t.add_argument("--timeout", type=float, default=None, help="per-exchange timeout in seconds")
    p.add_argument("--json", action="store_true", help="JSON Lines events on stdout")
    p.add_argument("--allow-downgrade", action="store_true", help="deploy a version older than the device's last")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("deploy", help="flash every region of a signed release and verify it")
    d.add_argument("source", help="manifest.json path or s3://BUCKET/PREFIX/releases/NAME/VERSION")
    d.add_argument("--channel", help="with an s3://BUCKET/PREFIX/NAME source: deploy this channel's release")
    d.add_argument("--trust", type=Path, action="append", default=[], help="trusted public key (.pub.pem) or directory")
    d.add_argument("--no-verify-signature", action="store_true", help="accept an unsigned release (digests still checked)")
    d.add_argument("--region", action="append", help="only this region (repeatable)")
    d.add_argument("--memory", help="only regions in this memory (e.g. external)")
    d.add_argument("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL or AWS)")
    d.add_argument("--cache", type=Path, help="download cache directory")
    _transport_options(d)
    d.set_defaults(func=_deploy)

    f = sub.add_parser("flash", help="flash one file at an address (unsigned, verified)")
    f.add_argument("file", type=Path)
    f.add_argument("--address", type=hexint, required=True, help="e.g. 0x80000 (external) or 0x08005000 (internal)")
    f.add_argument("--board", default="spark-core")
    f.add_argument("--allow-protected", action="store_true", help="allow writing a protected area (keys, bootloader)")
    _transport_options(f)
    f.set_defaults(func=_flash)


def open_source(args: argparse.Namespace) -> Release:
    trust = TrustStore.from_paths(args.trust) if args.trust else None
    src: str = args.source
    if src.startswith("s3://"):
        fetch = importlib.import_module("sparkflash.publish.fetch")
        manifest_path: Path = fetch.fetch_release(src, channel=args.channel, cache=args.cache,
                                                  endpoint_url=args.endpoint_url, trust=trust,
                                                  require_signature=not args.no_verify_signature)
    else:
        manifest_path = Path(src)
        if manifest_path.is_dir():
            manifest_path = manifest_path / "manifest.json"
    return open_release(manifest_path, trust, require_signature=not args.no_verify_signature)


def adhoc_release(file: Path, address: int, board_name: str, allow_protected: bool, store: Path) -> Release:
    """A one-region, unsigned release for `sparkflash flash`; the same checks as a manifest."""
    try:
        data = file.read_bytes()
    except OSError as e:
        raise InputError(f"{file}: {e.strerror}") from e
    if not data:
        raise InputError(f"{file}: empty file")
    board = load_board(board_name)
    mem = next((m for m in board.memories if m.contains(address)), None)
    if mem is None:
        raise InputError(f"address 0x{address:08x} is in no memory of {board.name}")
    if not mem.contains(address, len(data)):
        raise InputError(f"{file}: {len(data)} bytes at 0x{address:08x} run past the end of {mem.name} flash (0x{mem.end:08x})")
    prot = mem.protected_overlap(address, len(data))
    if prot and not allow_protected:
        raise InputError(f"0x{address:08x}+{len(data)} writes the protected area {prot.name!r}; pass --allow-protected")
    sha, crc = digests(data)
    store_blob(store, data)
    kind = "firmware" if mem.name == board.firmware_memory and address == board.firmware_address else "data"
    region = Region(file.name, mem.name, address, len(data), sha, crc, tuple(mem.sectors(address, len(data))),
                    kind, allow_protected)
    m = Manifest(file.stem, "0.0.0", board.name, (region,))
    return Release(m, m.canonical(), None, store)


def _run(args: argparse.Namespace, release: Release, regions: list[Region]) -> int:
    rep = Reporter(args.json)
    mod = importlib.import_module(VIA_MODULES[args.via])
    results: list[DeployResult] = mod.deploy(args, release, regions, rep, Ledger())
    doc: dict[str, Any] = {"ok": all(r.ok for r in results), "deployments": [r.to_json() for r in results]}
    rep.result(doc)
    return next((r.exit_code for r in results if r.exit_code), 0)


def _deploy(args: argparse.Namespace) -> int:
    release = open_source(args)
    regions = select_regions(release.manifest.regions, args.region, args.memory)
    if not regions:
        raise InputError("no region selected")
    return _run(args, release, regions)


def _flash(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="sparkflash-") as tmp:
        release = adhoc_release(args.file, args.address, args.board, args.allow_protected, Path(tmp))
        return _run(args, release, list(release.manifest.regions))
