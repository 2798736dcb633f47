"""`sparkflash keys generate|id|export-public|root`: Ed25519 release-signing keys and the root of trust."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparkflash.errors import InputError
from sparkflash.manifest.keys import FileSigner, generate_key, key_id, load_public_key, load_signer

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("keys", help="release-signing keys (Ed25519)", description="Release-signing keys (Ed25519).")
    ks = p.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    g = ks.add_parser("generate", help="create OUT (private, PEM) and OUT.pub.pem (public)",
                      description="Create an Ed25519 signing key: OUT (private, mode 0600) and OUT.pub.pem.")
    g.add_argument("-o", "--out", type=Path, help="private key path, e.g. keys/release.pem (never overwritten)")
    g.add_argument("path", type=Path, nargs="?", help=argparse.SUPPRESS)  # deprecated spelling: keys generate PATH
    g.set_defaults(func=_generate)
    i = ks.add_parser("id", help="print the key id (sha256 of the raw public key)",
                      description="Print a public key's id: the sha256 of its raw 32 bytes, as signatures name it.")
    i.add_argument("public", type=Path, help="public key (.pub.pem)")
    i.set_defaults(func=_id)
    e = ks.add_parser("export-public", help="write the public key of a private key or pkcs11: URI as PEM")
    e.add_argument("key", help="PEM private key path or RFC 7512 pkcs11: URI")
    e.add_argument("out", type=Path, help="where to write KEY.pub.pem (refuses to overwrite)")
    e.set_defaults(func=_export)
    from sparkflash.cli import keys_root_cmd

    keys_root_cmd.register(ks)


def _generate(args: argparse.Namespace) -> int:
    out: Path | None = args.out or args.path
    if out is None:
        raise InputError("keys generate: pass --out PATH (the private key; PATH.pub.pem is written beside it)")
    if args.out is not None and args.path is not None:
        raise InputError("keys generate: give the path once, as --out PATH")
    pub, kid = generate_key(out)
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "private": str(out), "public": str(pub), "key_id": kid,
                          "exit_code": 0}, sort_keys=True))
    else:
        print(f"private key {out}\npublic key  {pub}\nkey id      {kid}")
    return 0


def _id(args: argparse.Namespace) -> int:
    kid = key_id(load_public_key(args.public))
    if args.json:
        print(json.dumps({"event": "result", "ok": True, "public": str(args.public), "key_id": kid, "exit_code": 0},
                         sort_keys=True))
    else:
        print(kid)
    return 0


def _export(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from sparkflash.manifest.pkcs11_key import Pkcs11Signer

    signer = load_signer(args.key)
    pub = signer.public_key if isinstance(signer, (FileSigner, Pkcs11Signer)) else None
    if pub is None:
        raise InputError(f"{args.key}: this kind of key cannot export its public key")
    if args.out.exists():
        raise InputError(f"{args.out}: exists; refusing to overwrite a key")
    args.out.write_bytes(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    print(f"public key {args.out}\nkey id     {signer.key_id}")
    return 0
