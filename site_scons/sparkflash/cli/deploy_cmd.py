"""`sparkflash deploy SOURCE --via dfu|serial|ota` and `sparkflash flash [ADDR] FILE [ADDR FILE ...]`.

SOURCE is a release manifest path (blobs beside it) or an s3:// release URL. Each
transport module (`sparkflash.deploy.<via>`) provides:

    deploy(args, release, regions, on_event, ledger) -> list[DeployResult]

using the shared transport options below, so the CLI stays one thin loop.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path
from typing import Any

from sparkflash.cli.output import Reporter, hexint
from sparkflash.cli.progress import ParallelReporter
from sparkflash.deploy import flash_input
from sparkflash.deploy.base import DeployResult, accepted_statuses
from sparkflash.deploy.flash_input import FORMATS
from sparkflash.deploy.parallel import Job, run_parallel
from sparkflash.deploy.run import Ledger, select_regions
from sparkflash.errors import DeviceError, InputError, RemoteProtocolError
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import Release, open_release
from sparkflash.manifest.trust import load_trust

__all__ = ["register", "VIA_MODULES", "open_source", "adhoc_release"]

VIA_MODULES = {
    "dfu": "sparkflash.deploy.dfu",
    "serial": "sparkflash.deploy.serial_ymodem",
    "ota": "sparkflash.deploy.ota",
}


def _transport_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--via", choices=sorted(VIA_MODULES), required=True,
                   help="transport: dfu (USB DfuSe), serial (listening mode + YMODEM) or ota (our cloud)")
    t = p.add_argument_group("transport options")
    t.add_argument("-p", "--port", action="append",
                   help="serial: port path or pyserial URL, e.g. /dev/ttyACM0 (repeatable: in parallel)")
    t.add_argument("-b", "--baud", type=int, default=115200, help="serial: baud rate (default 115200)")
    t.add_argument("--stock-save-address", type=hexint, metavar="ADDR",
                   help="serial, stock firmware: the address the device's application passes to "
                        "System.serialSaveFile (e.g. 0x80000); only a region at it is sent")
    t.add_argument("-d", "--device", action="append", default=[],
                   help="dfu: VID:PID, usb:BUS-PORT or virtual:STATE_DIR; ota: device id (repeatable)")
    t.add_argument("--backend", choices=["pyusb", "dfu-util"], default="pyusb", help="dfu: how to reach USB (default pyusb)")
    t.add_argument("--no-skip", action="store_true", help="dfu: rewrite sectors even if unchanged")
    t.add_argument("--leave", action="store_true", help="dfu: leave DFU mode (reset) after writing")
    t.add_argument("--cloud", default="http://127.0.0.1:8683",
                   help="ota: admin API URL of `sparkflash cloud serve` (default http://127.0.0.1:8683)")
    t.add_argument("--online-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="ota: how long a registered device may take to come online before the deploy fails (default 30: a Core "
                   "rebooting after a firmware update takes several seconds to reconnect)")
    t.add_argument("--cloud-token", type=Path, help="ota: the admin API token file (KEY.admin-token beside the server "
                   "key; default $SPARKFLASH_CLOUD_TOKEN_FILE)")
    t.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="per-exchange timeout in seconds")
    v = p.add_mutually_exclusive_group()
    v.add_argument("--accept-unverified", action="store_true",
                   help='count regions the device could not verify ("sent", e.g. stock serial firmware) as success')
    v.add_argument("--require-verified", action="store_true",
                   help="succeed only for regions verified (or found unchanged) by the device's own digest")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("deploy", help="flash every region of a signed release and verify it",
                       description="Flash every region of a signed release and verify each on the device.")
    d.add_argument("source", help="manifest.json path (or its directory), s3://BUCKET/PREFIX/releases/NAME/VERSION, "
                                  "or s3://BUCKET/PREFIX/NAME with --channel")
    d.add_argument("--channel", help="with an s3://BUCKET/PREFIX/NAME source: deploy this channel's release")
    d.add_argument("--trust", type=Path, action="append", default=[],
                   help="root of trust (ROOT.root.json) or trusted public key (.pub.pem) or directory")
    d.add_argument("--no-verify-signature", action="store_true", help="accept an unsigned release (digests still checked)")
    d.add_argument("--region", action="append", help="only the region with this name (repeatable)")
    d.add_argument("--memory", help="only regions in this memory (internal or external)")
    d.add_argument("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL or AWS)")
    d.add_argument("--cache", type=Path, help="download cache directory (default $SPARKFLASH_HOME/cache)")
    d.add_argument("--allow-downgrade", action="store_true", help="deploy a version older than the device's last one")
    _transport_options(d)
    d.add_argument("--dry-run", action="store_true", help="print the plan (sectors, bytes, time) and write nothing")
    d.set_defaults(func=_deploy)

    f = sub.add_parser("flash", help="flash files at addresses (unsigned, verified; raw, Intel HEX or ELF)",
                       description="sparkflash flash [--address A] FILE, or ADDR FILE [ADDR FILE ...]; an Intel HEX "
                                   "or ELF file carries its own addresses and may stand alone.")
    f.add_argument("file", nargs="+", metavar="[ADDR] FILE", help="FILE, or ADDR FILE pairs (esptool style)")
    f.add_argument("-a", "--address", type=hexint, help="e.g. 0x80000 (external) or 0x08005000 (internal), for one FILE")
    f.add_argument("--format", choices=FORMATS, default="auto",
                   help="input format (default: by suffix, then content: ELF, Intel HEX, else raw binary)")
    f.add_argument("--allow-text", action="store_true", help="write an all-ASCII file raw (refused by default)")
    f.add_argument("--board", default="spark-core", help="board memory map (default spark-core)")
    f.add_argument("--allow-protected", action="store_true", help="allow writing a protected area (keys, bootloader)")
    _transport_options(f)
    f.set_defaults(func=_flash, allow_downgrade=False)


def open_source(args: argparse.Namespace) -> Release:
    trust = load_trust(args.trust) if args.trust else None
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


def adhoc_release(file: Path, address: int | None, board_name: str, allow_protected: bool, store: Path, *,
                  allow_text: bool = False, fmt: str = "auto") -> Release:
    """An unsigned release of one file for `sparkflash flash`; the same checks as a manifest."""
    return flash_input.adhoc_release([(address, file)], board_name, store, allow_protected=allow_protected,
                                     allow_text=allow_text, fmt=fmt)


def check_ota_devices(cloud: str, devices: list[str], online_timeout: float, token: str) -> None:
    """Fail at once, with the reason, for an OTA device the cloud does not know (exit 2) or
    that is not connected within online_timeout seconds (exit 4): never a silent wait."""
    from sparkflash.deploy.ota import AdminClient

    client = AdminClient(cloud, token)
    deadline = time.monotonic() + max(online_timeout, 0.0)
    while True:
        try:
            doc = client.call("GET", "/v1/devices")
            known = {str(d["id"]).lower(): d for d in doc["devices"]}
        except (ValueError, KeyError, TypeError) as e:  # JSON, but not ours; or not JSON at all
            raise RemoteProtocolError(f"cloud admin API at {cloud}: GET /v1/devices gave no device list ({e}); "
                                      "is this the --admin address of `sparkflash cloud serve`?") from None
        unknown = [d for d in devices if d.strip().lower() not in known]
        if unknown:
            raise InputError(f"device {', '.join(unknown)}: not registered with the cloud at {cloud} "
                             "(add it with `sparkflash cloud register`)")
        offline = [d for d in devices if not known[d.strip().lower()].get("connected")]
        if not offline:
            return
        if time.monotonic() >= deadline:
            raise DeviceError(f"device {', '.join(offline)}: registered but not connected to the cloud at {cloud} "
                              f"after {online_timeout:g} s (is it powered, online and pointed at this server?)")
        time.sleep(0.2)


class _NoLedger(Ledger):
    """`flash` writes no release: it neither records a version nor refuses one."""

    def refuse_downgrade(self, device: str, name: str, version: str) -> None:
        return None

    def record(self, device: str, release: str, version: str) -> None:
        return None


def _run(args: argparse.Namespace, release: Release, regions: list[Region], ledger: Ledger | None = None) -> int:
    """One device: the transport's deploy; several --device/--port: side by side, a bar per device."""
    led = Ledger() if ledger is None else ledger
    if args.via == "ota" and args.device:
        from sparkflash.deploy.ota import read_token

        check_ota_devices(args.cloud, args.device, args.online_timeout, read_token(args.cloud_token))
    mod = importlib.import_module(VIA_MODULES[args.via])
    ports: list[str] = list(args.port or [])
    targets = ports if args.via == "serial" else list(args.device) if args.via == "dfu" else []
    rep: Reporter = (ParallelReporter(args.json, targets, sum(r.size for r in regions)) if len(targets) > 1
                     else Reporter(args.json, quiet=args.quiet))
    results: list[DeployResult]
    if args.via == "serial" and len(ports) > 1:
        def job(port: str) -> Job:
            one = argparse.Namespace(**{**vars(args), "port": port})
            return port, lambda emit: list(mod.deploy(one, release, regions, emit, led))

        results = run_parallel([job(p) for p in ports], rep, release, regions, "serial")
    else:
        args.port = ports[0] if ports else None
        results = mod.deploy(args, release, regions, rep, led)
    accepted = accepted_statuses(args.require_verified, args.accept_unverified)
    for r in results:
        r.accepted = accepted
    if isinstance(rep, ParallelReporter):
        rep.summary(results)
    code = next((r.exit_code for r in results if r.exit_code), 0)
    doc: dict[str, Any] = {"ok": all(r.ok for r in results), "deployments": [r.to_json() for r in results],
                           "exit_code": code}
    if code:
        doc["error"] = "; ".join(f"{r.device}: {e}" for r in results for e in _errors(r)) or "deploy failed"
    rep.result(doc)
    return code


def _errors(r: DeployResult) -> list[str]:
    return [f"region {x['region']}: {x['error']}" for x in r.to_json().get("regions", []) if x.get("error")]


def _deploy(args: argparse.Namespace) -> int:
    release = open_source(args)
    regions = select_regions(release.manifest.regions, args.region, args.memory)
    if not regions:
        raise InputError("no region selected")
    if args.dry_run:
        from sparkflash.cli.plan_cmd import run_plan

        return run_plan(args, release, regions)
    return _run(args, release, regions)


def _flash(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="sparkflash-") as tmp:
        targets = flash_input.parse_targets(args.file, args.address)
        release = flash_input.adhoc_release(targets, args.board, Path(tmp), allow_protected=args.allow_protected,
                                            allow_text=args.allow_text, fmt=args.format)
        return _run(args, release, list(release.manifest.regions), _NoLedger())
