"""`sparkflash keys root init|add-key|remove-key|renew|sign|show|push`: the TUF root of trust (docs/publish.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sparkflash.errors import InputError
from sparkflash.manifest.keys import load_signer
from sparkflash.manifest.root_edit import RootDir, RootStatus, key_from_arg, key_id_from_arg, new_root
from sparkflash.manifest.trust import ROLES, root_summary

__all__ = ["register"]


def register(ks: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = ks.add_parser("root", help="the root of trust: keys and threshold of each role, rotation (TUF root metadata)",
                      description="A directory of TUF root versions (1.root.json, 2.root.json, ...) naming the "
                                  "keys and threshold of the root, manifest and channel roles.")
    rs = p.add_subparsers(dest="root_command", metavar="COMMAND", required=True)
    key_help = "a public key (.pub.pem), PEM private key or pkcs11: URI"

    i = rs.add_parser("init", help="write DIR/1.root.json (unsigned; then `keys root sign`)")
    i.add_argument("dir", type=Path, help="directory of root versions (created)")
    for role in ROLES:
        i.add_argument(f"--{role}-key", action="append", default=[], required=True, metavar="KEY",
                       help=f"a {role} role key: {key_help} (repeat for k-of-n)")
        i.add_argument(f"--{role}-threshold", type=int, default=1, metavar="K",
                       help=f"signatures of distinct {role} keys needed (default 1)")
    i.add_argument("--expires-days", type=float, default=365.0, help="the root expires after DAYS (default 365)")
    i.set_defaults(func=_init)

    for name, fn, what in (("add-key", _add, "add KEY to ROLE"), ("remove-key", _remove, "revoke KEY from ROLE")):
        a = rs.add_parser(name, help=f"{what} (starts the next root version if the newest is complete)")
        a.add_argument("dir", type=Path, help="directory of root versions")
        a.add_argument("--role", required=True, choices=list(ROLES), help="root, manifest or channel")
        a.add_argument("key", help=key_help + (" or a key id" if name == "remove-key" else ""))
        a.add_argument("--threshold", type=int, help="also set the role's threshold")
        a.add_argument("--expires-days", type=float, help="expiry of the new version (default 365 days)")
        a.set_defaults(func=fn)

    r = rs.add_parser("renew", help="the next root version with a new expiry and the same keys")
    r.add_argument("dir", type=Path, help="directory of root versions")
    r.add_argument("--expires-days", type=float, help="days (default 365)")
    r.set_defaults(func=_renew)

    s = rs.add_parser("sign", help="add signatures to the newest root version")
    s.add_argument("dir", type=Path, help="directory of root versions")
    s.add_argument("--key", action="append", required=True, help="PEM private key or pkcs11: URI (repeatable)")
    s.set_defaults(func=_sign)

    w = rs.add_parser("show", help="versions, roles, thresholds and signature status")
    w.add_argument("dir", type=Path, help="directory of root versions")
    w.set_defaults(func=_show)

    u = rs.add_parser("push", help="upload every complete version the bucket lacks to s3://BUCKET/PREFIX/roots/")
    u.add_argument("dir", type=Path, help="directory of root versions")
    u.add_argument("url", help="s3://BUCKET/PREFIX (the same as for publish)")
    u.add_argument("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL(_S3), else AWS)")
    u.add_argument("--aws-region", help="AWS region (default: AWS_REGION / AWS config, else us-east-1)")
    u.add_argument("--create-bucket", action="store_true", help="create the bucket if it does not exist")
    u.set_defaults(func=_push)


def _status_json(st: RootStatus) -> dict[str, Any]:
    return {"version": st.version, "complete": st.complete, "own_root_signatures": list(st.own),
            "previous_root_signatures": None if st.previous is None else list(st.previous)}


def _status_text(st: RootStatus) -> str:
    prev = "" if st.previous is None else f", {st.previous[0]}/{st.previous[1]} of v{st.version - 1}'s root keys"
    return (f"root v{st.version}: {st.own[0]}/{st.own[1]} of its own root keys{prev}: "
            + ("complete" if st.complete else "needs more signatures (sparkflash keys root sign)"))


def _done(args: argparse.Namespace, out: Path, d: RootDir, extra: dict[str, Any] | None = None) -> int:
    md = d.newest()
    st = d.status(md)
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "exit_code": 0, "file": str(out), **_status_json(st),
                          **root_summary(md), **(extra or {})}, sort_keys=True))
    elif not args.quiet:
        print(f"wrote {out}\n{_status_text(st)}")
    return 0


def _init(args: argparse.Namespace) -> int:
    keys = {role: [key_from_arg(k) for k in getattr(args, f"{role}_key")] for role in ROLES}
    thresholds = {role: int(getattr(args, f"{role}_threshold")) for role in ROLES}
    d = RootDir(args.dir)
    out = d.create(new_root(keys, thresholds, args.expires_days))
    return _done(args, out, d)


def _add(args: argparse.Namespace) -> int:
    d = RootDir(args.dir)
    return _done(args, d.add_key(args.role, key_from_arg(args.key), args.threshold, args.expires_days), d)


def _remove(args: argparse.Namespace) -> int:
    d = RootDir(args.dir)
    return _done(args, d.remove_key(args.role, key_id_from_arg(args.key), args.threshold, args.expires_days), d)


def _renew(args: argparse.Namespace) -> int:
    d = RootDir(args.dir)
    return _done(args, d.renew(args.expires_days), d)


def _sign(args: argparse.Namespace) -> int:
    d = RootDir(args.dir)
    out, _ = d.sign([load_signer(k) for k in args.key])
    return _done(args, out, d)


def _show(args: argparse.Namespace) -> int:
    d = RootDir(args.dir)
    rows = []
    for v in d.versions():
        md = d.load(v)
        rows.append({**root_summary(md), **_status_json(d.status(md))})
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "exit_code": 0, "dir": str(args.dir), "versions": rows},
                         sort_keys=True))
        return 0
    for row in rows:
        print(f"root v{row['version']} expires {row['expires']}: " + ("complete" if row["complete"] else "INCOMPLETE"))
        for role, info in row["roles"].items():
            print(f"  {role:8} ({info['tuf_role']}): {info['threshold']} of {len(info['keys'])}: "
                  + ", ".join(k[:16] + "…" for k in info["keys"]))
    return 0


def _push(args: argparse.Namespace) -> int:
    from sparkflash.publish.roots import push_root
    from sparkflash.publish.store import ClientOptions, open_store, parse_s3_url

    d = RootDir(args.dir)
    loc = parse_s3_url(args.url)
    for v in d.versions():  # all checked before the bucket is touched
        if not d.status(d.load(v)).complete:
            raise InputError(f"{d.file(v)}: root v{v} is not completely signed; sign it before pushing")
    store = open_store(loc.bucket, ClientOptions(endpoint_url=args.endpoint_url, region=args.aws_region))
    store.ensure_bucket(args.create_bucket)
    done = []
    for v in d.versions():
        done.append(push_root(store, loc, d.file(v).read_bytes(), str(d.file(v))))
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "exit_code": 0, "roots": done}, sort_keys=True))
    elif not args.quiet:
        for r in done:
            print(f"root v{r['version']}: {r['status']} ({r['url']})")
    return 0
