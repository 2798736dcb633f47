"""`sparkflash plan SOURCE --via ...` (and `deploy --dry-run`): what a deploy would do, without writing.

Per device (one plan without a device), per region: sectors to erase, write and skip,
bytes to send and the estimated time (deploy.link_model). `--json`: one result line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sparkflash.boards import Board, load_board
from sparkflash.deploy.plan import RegionPlan, plan_dfu, plan_stream, totals
from sparkflash.deploy.run import select_regions
from sparkflash.errors import InputError
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import Release

__all__ = ["register", "run_plan"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plan", help="what a deploy would erase, write and skip, bytes and time (writes nothing)")
    deploy = sub.choices.get("deploy")
    if deploy is None:  # pragma: no cover - COMMAND_MODULES registers deploy first
        raise RuntimeError("plan needs the deploy command registered first")
    # exactly deploy's options (source, transport), so the two never drift apart
    for action in deploy._actions:
        if action.dest not in ("help", "dry_run"):
            p._add_action(action)
    p.set_defaults(func=_plan)


def _plan(args: argparse.Namespace) -> int:
    from sparkflash.cli.deploy_cmd import open_source

    release = open_source(args)
    regions = select_regions(release.manifest.regions, args.region, args.memory)
    if not regions:
        raise InputError("no region selected")
    return run_plan(args, release, regions)


def _dfu_plans(args: argparse.Namespace, board: Board, release: Release,
               regions: list[Region]) -> list[tuple[str, list[RegionPlan]]]:
    from sparkflash.deploy.dfu import check_region, open_backends

    for r in regions:
        check_region(board, r)
    no_skip = bool(getattr(args, "no_skip", False))
    if not args.device:
        return [("(no device)", [plan_dfu(board, r, release.blob(r), None, no_skip=no_skip) for r in regions])]
    out = []
    backends = open_backends(args, board)
    try:
        for b in backends:
            plans = []
            for r in regions:
                b.select(board.memory(r.memory).dfu_alt)
                plans.append(plan_dfu(board, r, release.blob(r), b.read, no_skip=no_skip))
            out.append((b.device_id(), plans))
    finally:
        for b in backends:
            b.close()
    return out


def _stream_plans(args: argparse.Namespace, board: Board, release: Release,
                  regions: list[Region]) -> list[tuple[str, list[RegionPlan]]]:
    baud = int(getattr(args, "baud", 115200) or 115200)
    if args.via == "serial" and getattr(args, "port", None):
        from sparkflash.deploy.serial_ymodem import SerialFlasher, plan_region

        for r in regions:
            plan_region(board, r)
        out = []
        for port in _ports(args):
            flasher = SerialFlasher(port, board, baud=baud, timeout=getattr(args, "timeout", None))
            try:
                out.append((port, [plan_stream(board, r, "serial", flasher.device_digest, baud=baud) for r in regions]))
            finally:
                flasher.close()
        return out
    names = [d for d in args.device] if args.via == "ota" and args.device else ["(no device)"]
    return [(n, [plan_stream(board, r, args.via, None, baud=baud) for r in regions]) for n in names]


def _ports(args: argparse.Namespace) -> list[str]:
    p = args.port
    return list(p) if isinstance(p, list) else [p]


def run_plan(args: argparse.Namespace, release: Release, regions: list[Region]) -> int:
    for r in regions:
        release.blob(r)  # every digest checked, as a deploy would
    board = load_board(release.manifest.board)
    plans = (_dfu_plans if args.via == "dfu" else _stream_plans)(args, board, release, regions)
    m = release.manifest
    doc: dict[str, Any] = {"ok": True, "release": m.name, "version": m.version, "via": args.via, "dry_run": True,
                           "plans": [{"device": dev, "regions": [p.to_json() for p in ps], "totals": totals(ps)}
                                     for dev, ps in plans]}
    if getattr(args, "json", False):
        print(json.dumps({"event": "result", **doc}, sort_keys=True), flush=True)
        return 0
    print(f"Plan: {m.name} {m.version} via {args.via} (nothing written)", file=sys.stderr)
    for dev, ps in plans:
        print(f"{dev}:")
        print(f"  {'region':<20} {'address':>10} {'size':>9} {'sectors':>7} {'erase':>6} {'write':>6} {'skip':>6} "
              f"{'bytes':>9} {'est. s':>7}")
        for p in ps:
            print(f"  {p.region:<20} 0x{p.address:08x} {p.size:>9} {p.sectors:>7} {p.erase:>6} {p.write:>6} "
                  f"{p.skip:>6} {p.bytes_to_send:>9} {p.seconds:>7.2f}" + (f"  ({p.note})" if p.note else ""))
        t = totals(ps)
        print(f"  {'total':<20} {'':>10} {'':>9} {t['sectors']:>7} {t['erase']:>6} {t['write']:>6} {t['skip']:>6} "
              f"{t['bytes_to_send']:>9} {t['seconds']:>7.2f}")
    return 0
