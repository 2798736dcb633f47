"""`sparkflash publish DIST s3://BUCKET/PREFIX` and `sparkflash s3-local` (the loopback S3 server)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sparkflash.cli.output import Reporter, fmt_size, plural

__all__ = ["register"]


def listen_address(default_port: int) -> Callable[[str], tuple[str, int]]:
    """argparse type for --listen HOST:PORT (PORT 0 = any free port; a bare PORT means loopback)."""

    def parse(s: str) -> tuple[str, int]:
        host, sep, port = s.rpartition(":")
        if not sep:
            host, port = "127.0.0.1", s
        if not port.isdigit() or int(port) > 65535 or (sep and not host):
            raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 127.0.0.1:{default_port}), got {s!r}")
        return host.strip("[]"), int(port)

    return parse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("publish", help="upload a signed release to S3 (blobs, then manifest, then channel)",
                       description="Upload a signed release to S3: blobs, then the manifest and signature, "
                                   "then the signed channel record (docs/publish.md).")
    p.add_argument("dist", type=Path, help="signed release directory (manifest.json, .sig, blobs/) or its manifest.json")
    p.add_argument("url", help="s3://BUCKET/PREFIX")
    p.add_argument("--channel", help="also point channels/NAME/CHANNEL.json at this release (needs --key)")
    p.add_argument("--channel-expires-days", type=float, default=30.0, metavar="DAYS",
                   help="the channel record expires after DAYS (default 30): a frozen channel stops deploying")
    p.add_argument("--key", action="append", default=[],
                   help="Ed25519 private key (PEM path or pkcs11: URI): checks the release signature, signs the "
                        "channel record; repeat for a channel role with a threshold above 1")
    p.add_argument("--trust", type=Path, action="append", default=[],
                   help="root of trust (ROOT.root.json, walked up through the bucket's roots/), or trusted "
                        "public keys (.pub.pem files or directories)")
    p.add_argument("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL(_S3), else AWS)")
    p.add_argument("--aws-region", help="AWS region (default: AWS_REGION / AWS config, else us-east-1)")
    p.add_argument("--region", dest="aws_region", help=argparse.SUPPRESS)  # deprecated spelling of --aws-region
    p.add_argument("--create-bucket", action="store_true", help="create the bucket if it does not exist")
    p.set_defaults(func=_publish)

    s = sub.add_parser("s3-local", help="run an S3 server on loopback (moto server mode) until interrupted",
                       description="Run an S3 server on loopback (moto's server mode) until interrupted; "
                                   "needs the extra: pip install 'sparkflash[s3-local]'.")
    s.add_argument("--listen", type=listen_address(5000), default=("127.0.0.1", 5000), metavar="HOST:PORT",
                   help="loopback address and TCP port (default 127.0.0.1:5000; port 0 = any free port)")
    s.add_argument("--host", help=argparse.SUPPRESS)  # deprecated: --listen HOST:PORT
    s.add_argument("--port", type=int, help=argparse.SUPPRESS)  # deprecated: --listen HOST:PORT
    s.add_argument("--data", type=Path, help="keep objects in this directory across restarts")
    s.add_argument("--bucket", action="append", default=[], help="create this bucket at start (repeatable)")
    s.add_argument("-v", "--verbose", action="count", default=0, help="log every request on stderr")
    s.set_defaults(func=_s3_local)


class _PublishPrinter:
    """Human-readable publish progress on stderr."""

    def __call__(self, ev: dict[str, Any]) -> None:
        kind = ev["event"]
        if kind == "publish-start":
            print(f"Publishing {ev['release']} {ev['version']} to {ev['url']} ({plural(int(ev['blobs']), 'blob')})",
                  file=sys.stderr)
        elif kind == "blob-done":
            print(f"  blob {ev['sha256'][:16]}… {fmt_size(ev['size'])}: {ev['status']}", file=sys.stderr)
        elif kind == "manifest-done":
            print(f"  manifest: {ev['status']}", file=sys.stderr)
        elif kind == "channel-done":
            prev = f" (was {ev['previous']})" if ev.get("previous") else ""
            print(f"  channel {ev['channel']} -> {ev['version']}{prev}, sequence {ev.get('sequence')}, "
                  f"expires {ev.get('expires')}", file=sys.stderr)


def _publish(args: argparse.Namespace) -> int:
    from sparkflash.manifest.keys import load_signer
    from sparkflash.manifest.trust import load_trust
    from sparkflash.publish.store import ClientOptions
    from sparkflash.publish.upload import PublishOptions, publish

    signer = [load_signer(k) for k in args.key]
    trust = load_trust(args.trust) if args.trust else None
    rep = Reporter(True) if args.json else None
    printer = (lambda ev: None) if args.quiet else _PublishPrinter()
    report = publish(args.dist, args.url, signer=signer, trust=trust, channel=args.channel,
                     client_options=ClientOptions(endpoint_url=args.endpoint_url, region=args.aws_region),
                     options=PublishOptions(create_bucket=args.create_bucket,
                                            channel_ttl=timedelta(days=args.channel_expires_days)),
                     on_event=rep if rep is not None else printer)
    doc = report.to_json()
    if rep is not None:
        rep.result({"ok": True, "exit_code": 0, **doc})
    elif not args.quiet:
        print(f"{report.url}: {report.manifest_status}; uploaded {doc['blobs_uploaded']} of {len(report.blobs)} "
              f"blobs ({fmt_size(report.bytes_uploaded)})")
    return 0


def _s3_local(args: argparse.Namespace) -> int:
    from sparkflash import names
    from sparkflash.publish.local_server import LocalS3

    host, port = args.listen
    host = args.host if args.host is not None else host
    port = args.port if args.port is not None else port
    for b in args.bucket:
        names.bucket(b, "--bucket")  # before the server starts: one clear line, exit 2
    server = LocalS3(host, port, args.data, bool(args.verbose)).start(args.bucket)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.json:
        print(json.dumps({"endpoint": server.endpoint, "data": str(args.data) if args.data else None}), flush=True)
    else:
        print(f"S3 endpoint {server.endpoint} (export AWS_ENDPOINT_URL={server.endpoint}); Ctrl-C stops it",
              flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
