"""`sparkflash keys generate|id`: Ed25519 release-signing keys."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparkflash.errors import InputError
from sparkflash.manifest.keys import FileSigner, generate_key, key_id, load_public_key, load_signer

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("keys", help="release-signing keys (Ed25519)")
    ks = p.add_subparsers(dest="keys_command", required=True)
    g = ks.add_parser("generate", help="create PRIVATE.pem and PRIVATE.pub.pem")
    g.add_argument("path", type=Path)
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=_generate)
    i = ks.add_parser("id", help="print the key id (sha256 of the raw public key)")
    i.add_argument("public", type=Path)
    i.set_defaults(func=_id)
    e = ks.add_parser("export-public", help="write the public key of a private key or pkcs11: URI as PEM")
    e.add_argument("key", help="PEM private key path or RFC 7512 pkcs11: URI")
    e.add_argument("out", type=Path, help="where to write KEY.pub.pem (refuses to overwrite)")
    e.set_defaults(func=_export)


def _generate(args: argparse.Namespace) -> int:
    pub, kid = generate_key(args.path)
    if args.json:
        print(json.dumps({"private": str(args.path), "public": str(pub), "key_id": kid}))
    else:
        print(f"private key {args.path}\npublic key  {pub}\nkey id      {kid}")
    return 0


def _id(args: argparse.Namespace) -> int:
    print(key_id(load_public_key(args.public)))
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
