"""`sparkflash cloud serve|register|keygen`: run our own Spark cloud for OTA deployments."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.errors import InputError
from sparkflash.manifest.release import atomic_write

__all__ = ["register"]


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host, int(port)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cloud", help="our own Spark cloud server for OTA (devices on TCP 5683, admin API on loopback)")
    cs = p.add_subparsers(dest="cloud_command", metavar="COMMAND", required=True)

    s = cs.add_parser("serve", help="accept registered devices and run deployments")
    s.add_argument("--listen", type=_hostport, default=("127.0.0.1", 5683), metavar="HOST:PORT",
                   help="device listener (default 127.0.0.1:5683, loopback; 0.0.0.0:5683 lets real Cores on the "
                        "network in; port 0 = any free port)")
    s.add_argument("--host", help=argparse.SUPPRESS)  # deprecated: --listen HOST:PORT
    s.add_argument("--port", type=int, help=argparse.SUPPRESS)  # deprecated: --listen HOST:PORT
    s.add_argument("--admin", type=_hostport, default=("127.0.0.1", 8683), help="admin API HOST:PORT (default 127.0.0.1:8683)")
    s.add_argument("--key", type=Path, required=True, help="server RSA-2048 private key (from `cloud keygen`)")
    s.add_argument("--devices", type=Path, required=True, help="directory of registered device keys (<id>.pub.pem)")
    s.add_argument("--trust", type=Path, action="append", default=[],
                   help="deploy only releases signed by these keys, or by a threshold of a root of trust's "
                        "manifest keys (ROOT.root.json); required unless --insecure-unsigned")
    s.add_argument("--insecure-unsigned", action="store_true",
                   help="TESTS ONLY: also deploy unsigned releases (anyone with the token can then flash anything)")
    s.add_argument("--store", type=Path, help="state directory: blob store, downgrade record and the default "
                                              "database (default DEVICES/.store)")
    s.add_argument("--database", metavar="URL",
                   help="fleet database: a SQLite file (default STORE/fleet.db) or postgresql://USER@HOST/DB; holds "
                        "devices, deployments and rollouts, progress, events (a restart resumes from it)")
    s.add_argument("--instance", default="local",
                   help="this server's name in the database (its claims and connections; default 'local'); "
                        "several instances on one database need distinct names")
    s.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint for releases named by reference (default: "
                                                         "AWS_ENDPOINT_URL or AWS)")
    s.add_argument("--max-per-peer", type=int, default=64, help="live device connections per IP address (default 64)")
    s.add_argument("--rsa-workers", type=int, default=os.cpu_count() or 1,
                   help="processes for the RSA handshakes (default: one per CPU; 0 = on the event loop)")
    s.add_argument("--instance-lease", type=float, default=30.0, metavar="SECONDS",
                   help="an instance silent this long loses its devices and its claimed deployments to the others "
                        "(heartbeats every third of it; default 30 s)")
    s.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    s.set_defaults(func=_serve)

    r = cs.add_parser("register", help="allow a device: a virtual core's STATE_DIR or a PUBKEY file")
    r.add_argument("source", type=Path, help="virtual core state directory, or <id>.pub.pem")
    r.add_argument("--devices", type=Path, required=True, help="the server's device directory")
    r.add_argument("--id", help="device id (24 hex) when SOURCE is a key file not named <id>.pub.pem")
    r.add_argument("--server-key", type=Path, help="with a STATE_DIR: also point the core at this server (public DER)")
    r.add_argument("--server", type=_hostport, default=("127.0.0.1", 5683), help="with --server-key: HOST:PORT")
    r.add_argument("--save-begin", action="store_true",
                   help="its firmware has the flasher_additions protocol library (SaveBegin: files at any address); "
                        "nothing on the wire proves this, so declare it only if true")
    r.set_defaults(func=_register)

    from sparkflash.cli.rollout_cmd import add_cloud_options

    d = cs.add_parser("devices", help="the server's devices: capabilities, generation, last seen, last verified release")
    d.add_argument("--label", help="only the devices with this label")
    add_cloud_options(d)
    d.set_defaults(func=_devices)

    lb = cs.add_parser("label", help="set a device's labels (groups that rollouts target); none clears them")
    lb.add_argument("device", help="device id (24 hex)")
    lb.add_argument("labels", nargs="*", help="labels (a-z 0-9 _ . -)")
    add_cloud_options(lb)
    lb.set_defaults(func=_label)

    k = cs.add_parser("keygen", help="make the server key: OUT (private DER) and OUT.pub (294-byte SPKI for 0x1000)")
    k.add_argument("-o", "--out", type=Path, default=Path("server.der"), help="private key path (default server.der)")
    k.add_argument("--force", action="store_true", help="overwrite an existing key")
    k.set_defaults(func=_keygen)


def _serve(args: argparse.Namespace) -> int:
    from sparkflash.cloud import CloudServer, DeviceRegistry, ServerThread
    from sparkflash.cloud.server import Limits, load_or_create_token, load_server_key
    from sparkflash.manifest.trust import load_trust

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    args.devices.mkdir(parents=True, exist_ok=True)
    if not args.trust and not args.insecure_unsigned:
        raise InputError("cloud serve needs --trust KEY (the release signing keys it accepts); "
                         "--insecure-unsigned exists for tests only")
    trust = load_trust(args.trust) if args.trust else None
    host = args.host if args.host is not None else args.listen[0]
    port = args.port if args.port is not None else args.listen[1]
    token_path = args.key.with_name(args.key.name + ".admin-token")
    srv = CloudServer(load_server_key(args.key), DeviceRegistry(args.devices), host=host, port=port,
                      admin=args.admin, trust=trust, token=load_or_create_token(token_path), store=args.store,
                      insecure_unsigned=args.insecure_unsigned, limits=Limits(per_peer=args.max_per_peer),
                      rsa_workers=args.rsa_workers, database=args.database, instance=args.instance,
                      s3_endpoint=args.s3_endpoint, lease_s=args.instance_lease)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with ServerThread(srv):
        admin_host, admin_port = srv.admin_addr or ("", 0)
        info = {"devices": f"{host}:{srv.port}", "admin": f"http://{admin_host}:{admin_port}", "token_file": str(token_path),
                "database": srv.db.dialect, "instance": srv.instance}
        print(json.dumps(info) if args.json else f"cloud: devices on {info['devices']}, admin API {info['admin']}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def _devices(args: argparse.Namespace) -> int:
    import datetime

    from sparkflash.cli.rollout_cmd import admin_client

    doc = admin_client(args).call("GET", "/v1/devices")
    devs = [d for d in doc["devices"] if args.label is None or args.label in d.get("labels", [])]
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "exit_code": 0, "devices": devs, "refused": doc.get("refused", [])},
                         sort_keys=True))
        return 0

    def when(t: float | None) -> str:
        return "never" if t is None else datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    for d in devs:
        rel = d.get("release")
        print(f"{d['id']}  {'online ' if d['connected'] else 'offline'}  {d.get('generation') or '?':4}  "
              f"caps: {','.join(d.get('capabilities') or []) or '-'}  labels: {','.join(d.get('labels') or []) or '-'}  "
              f"seen: {when(d.get('last_seen'))}  release: "
              + (f"{rel['name']} {rel['version']} (verified {when(rel['verified_at'])})" if rel else "-"))
    if not devs:
        print("no devices")
    return 0


def _label(args: argparse.Namespace) -> int:
    from sparkflash.cli.rollout_cmd import admin_client

    doc = admin_client(args).call("PUT", f"/v1/devices/{args.device.lower()}/labels", {"labels": args.labels})
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "exit_code": 0, **doc}, sort_keys=True))
    else:
        print(f"{doc['id']}: labels {', '.join(doc['labels']) or 'none'}")
    return 0


def _register(args: argparse.Namespace) -> int:
    from sparkflash.cloud import DeviceRegistry
    from sparkflash.protocols.cloud_handshake import server_public_der
    from sparkflash.virtual.state import CoreState

    reg = DeviceRegistry(args.devices)
    if args.source.suffix != ".pem":  # a state directory (created on first use, as virtual-core does)
        st = CoreState.open(args.source)
        try:
            device, pem = st.info["device_id"], st.device_public_pem()
            if args.server_key:
                key = serialization.load_der_public_key(args.server_key.read_bytes())
                assert isinstance(key, rsa.RSAPublicKey)
                st.set_server(server_public_der(key), *args.server)
        finally:
            st.close()
    else:
        try:
            pem = args.source.read_bytes()
        except OSError as e:
            raise InputError(f"{args.source}: {e.strerror}") from None
        device = args.id or args.source.name.split(".")[0].split("_")[0]
    path = reg.register(device, pem, {"save_begin": True} if args.save_begin else None)
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "exit_code": 0, "device": device, "path": str(path)}))
    else:
        print(f"registered {device} -> {path}")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from sparkflash.protocols.cloud_handshake import server_public_der

    pub_path = args.out.with_name(args.out.name + ".pub")
    if args.out.exists() and not args.force:
        raise InputError(f"{args.out} exists; pass --force to replace the server key (every device must then be re-pointed)")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    atomic_write(args.out, key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                             serialization.NoEncryption()))
    args.out.chmod(0o600)
    atomic_write(pub_path, server_public_der(key.public_key()))
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "exit_code": 0, "private": str(args.out), "public": str(pub_path)}))
    else:
        print(f"server key: {args.out} (private), {pub_path} (294-byte public key for the Core's 0x1000)")
    return 0
