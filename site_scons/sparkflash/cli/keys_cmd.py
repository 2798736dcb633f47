"""`sparkflash keys generate|id`: Ed25519 release-signing keys."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparkflash.manifest.keys import generate_key, key_id, load_public_key

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
