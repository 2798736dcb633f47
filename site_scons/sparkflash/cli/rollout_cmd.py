"""`sparkflash rollout create|status|list|pause|resume|abort`: phased rollouts through the cloud's admin API.

The server holds the rollout in its database (docs/fleet.md) and fetches the release itself:
a rollout names it by reference (`s3://BUCKET/PREFIX/releases/NAME/VERSION` or
`channel:s3://BUCKET/PREFIX/NAME#CHANNEL`), never by a local path.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sparkflash.errors import InputError

__all__ = ["admin_client", "add_cloud_options", "register"]


def add_cloud_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cloud", default="http://127.0.0.1:8683",
                   help="admin API URL of `sparkflash cloud serve` (default http://127.0.0.1:8683)")
    p.add_argument("--cloud-token", type=Path, metavar="FILE",
                   help="the admin API token file (KEY.admin-token beside the server key; default "
                        "$SPARKFLASH_CLOUD_TOKEN_FILE)")


def admin_client(args: argparse.Namespace) -> Any:
    from sparkflash.deploy.ota import AdminClient, read_token

    return AdminClient(args.cloud, read_token(args.cloud_token))


def _phase(s: str) -> dict[str, float]:
    """PERCENT[:THRESHOLD], e.g. 10:0.95 or 10:95% (threshold default 1.0: every device must succeed)."""
    pct, _, thr = s.partition(":")
    try:
        p = float(pct.rstrip("%"))
        t = 1.0 if not thr else float(thr.rstrip("%")) / (100.0 if thr.endswith("%") else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"phase {s!r}: expected PERCENT[:THRESHOLD], e.g. 10:0.95") from None
    return {"percent": p, "threshold": t}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("rollout", help="phased rollouts of a release to the cloud's devices (by id, label, percentage)")
    rs = p.add_subparsers(dest="rollout_command", metavar="COMMAND", required=True)

    c = rs.add_parser("create", help="start a rollout: targets, phases with success thresholds")
    c.add_argument("release", help="s3://BUCKET/PREFIX/releases/NAME/VERSION or channel:s3://BUCKET/PREFIX/NAME#CHANNEL")
    c.add_argument("--id", help="rollout id (1-63 of a-z 0-9 -; default: one is made)")
    c.add_argument("-d", "--device", action="append", default=[], help="target this device id (repeatable)")
    c.add_argument("--label", action="append", default=[], help="target the devices with this label (repeatable)")
    c.add_argument("--percent", type=float, default=100.0, help="of the devices matched (default 100)")
    c.add_argument("--phase", type=_phase, action="append", default=[], metavar="PERCENT[:THRESHOLD]",
                   help="a phase reaching PERCENT of the target, THRESHOLD of its devices must succeed (default "
                        "1:1.0, 10:0.95, 100:0.95); the rollout pauses itself once a threshold cannot be met")
    c.add_argument("--region", action="append", default=None, help="deploy only this region (repeatable)")
    c.add_argument("--chunk-size", type=int, default=512, help="OTA chunk size (128, 256, 512)")
    c.add_argument("--connect-timeout", type=float, default=60.0, help="seconds a device may take to (re)connect")
    c.add_argument("--no-fast", action="store_true", help="stop-and-wait OTA even on Device OS")
    c.add_argument("--allow-downgrade", action="store_true", help="deploy a version older than the devices hold")
    c.set_defaults(func=_create)

    s = rs.add_parser("status", help="a rollout: each phase (threshold, counts, state) and each device")
    s.add_argument("id", help="rollout (or deployment) id")
    s.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds while it is running (until done, paused or aborted)")
    s.set_defaults(func=_status)

    ls = rs.add_parser("list", help="every rollout and deployment with its state")
    ls.set_defaults(func=_list)

    for name, text in (("pause", "stop handing out work (transfers under way finish)"),
                       ("resume", "run a paused rollout again"), ("abort", "end it: waiting devices are skipped")):
        q = rs.add_parser(name, help=text)
        q.add_argument("id", help="rollout id")
        if name == "resume":
            q.add_argument("--retry-failed", action="store_true",
                           help="retry the failed devices of the active phase (else they are accepted as failed)")
        q.set_defaults(func=_command, command=name)
    for q in (c, s, ls, *[rs.choices[n] for n in ("pause", "resume", "abort")]):
        add_cloud_options(q)


def _print(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    print(json.dumps({"event": "result", "ok": True, "exit_code": 0, **doc}, sort_keys=True) if args.json else text)


def _summary(st: dict[str, Any]) -> str:
    lines = [f"rollout {st['id']}: {st['state']}, phase {st['phase']} of {len(st['phases'])} — {st['release']}"]
    if st.get("reason"):
        lines.append(f"  {st['reason']}")
    for p in st["phases"]:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(p["counts"].items())) or "no devices"
        lines.append(f"  phase {p['phase']}: {p['percent']:g} % of the target, threshold {p['threshold']:.0%} "
                     f"(at most {p['failure_budget']} may fail): {p['state']}; {counts}")
    for d in st["devices"]:
        err = d["detail"].get("error") if isinstance(d.get("detail"), dict) else None
        regions = d["detail"].get("regions", []) if isinstance(d.get("detail"), dict) else []
        statuses = ", ".join(f"{r['region']} {r['status']}" for r in regions)
        lines.append(f"  {d['device']}  phase {d['phase']}  {d['status']}"
                     + (f"  ({statuses})" if statuses else "") + (f": {err}" if err else ""))
    return "\n".join(lines)


def _create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"release": args.release,
                            "target": {"devices": args.device, "labels": args.label, "percent": args.percent},
                            "chunk_size": args.chunk_size, "connect_timeout": args.connect_timeout,
                            "fast": not args.no_fast, "allow_downgrade": args.allow_downgrade}
    if args.id:
        body["id"] = args.id
    if args.phase:
        body["phases"] = args.phase
    if args.region:
        body["regions"] = args.region
    st = admin_client(args).call("POST", "/v1/rollouts", body)
    _print(args, {"rollout": st}, _summary(st))
    return 0


def _status(args: argparse.Namespace) -> int:
    client = admin_client(args)
    end = time.monotonic() + max(0.0, args.wait)
    while True:
        st = client.call("GET", f"/v1/rollouts/{args.id}")
        if st["state"] != "running" or time.monotonic() >= end:
            break
        time.sleep(0.25)
    _print(args, {"rollout": st}, _summary(st))
    return 0


def _list(args: argparse.Namespace) -> int:
    doc = admin_client(args).call("GET", "/v1/rollouts")
    text = "\n".join(f"{r['id']}  {r['state']}  phase {r['phase']}/{r['phases']}  {r['release']}"
                     + (f"  ({r['reason']})" if r.get("reason") else "") for r in doc["rollouts"]) or "no rollouts"
    _print(args, doc, text)
    return 0


def _command(args: argparse.Namespace) -> int:
    body = {"retry_failed": bool(getattr(args, "retry_failed", False))} if args.command == "resume" else {}
    if not args.id:
        raise InputError("a rollout id is needed")
    st = admin_client(args).call("POST", f"/v1/rollouts/{args.id}/{args.command}", body)
    _print(args, {"rollout": st}, _summary(st))
    return 0
