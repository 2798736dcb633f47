"""The root of trust in the bucket: `roots/<N>.root.json` beside `releases/`, walked by every reader.

A reader starts from the newer of its pinned root (`--trust ROOT.root.json`, given out of band)
and the root this host last accepted for the bucket/prefix, fetches N+1, N+2, ... until one is
missing, accepting each only if a threshold of the previous version's root keys and of its own
signed it (`verify_root_update`); the newest must not be expired. It is then remembered, so a
bucket that later serves an older root (or none) cannot take this host back to revoked keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparkflash import names
from sparkflash.errors import InputError, PublishError, VerifyError
from sparkflash.manifest.release import atomic_write
from sparkflash.manifest.trust import ROOT_CAP, TrustRoot, parse_root, verify_root_update, walk_roots
from sparkflash.publish.channel import state_root
from sparkflash.publish.store import S3Store, S3Url

__all__ = ["RootMemory", "push_root", "refresh_root", "root_key"]


def root_key(loc: S3Url, version: int) -> str:
    """roots/<N>.root.json: the version is an int, so the key is built only from validated parts."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 1 << 31:
        raise InputError(f"root version {version!r} out of range")
    return loc.key("roots", f"{version}.root.json")


def _get(store: S3Store, key: str) -> bytes | None:
    chunks = store.iter_get(key)
    if chunks is None:
        return None
    buf = bytearray()
    for c in chunks:
        buf += c
        if len(buf) > ROOT_CAP:
            raise VerifyError(f"s3://{store.bucket}/{key}: root metadata larger than {ROOT_CAP} bytes; refused")
    return bytes(buf)


class RootMemory:
    """The newest root this host accepted, per bucket/prefix (validated names only)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or state_root()) / "roots"

    def _path(self, loc: S3Url) -> Path:
        p = self.root / names.bucket(loc.bucket)
        for part in names.prefix(loc.prefix).split("/") if loc.prefix else []:
            p = p / part
        return p / "root.json"

    def load(self, loc: S3Url) -> TrustRoot | None:
        p = self._path(loc)
        if not p.exists():
            return None
        try:
            return TrustRoot.from_file(p)
        except (InputError, VerifyError) as e:
            raise InputError(f"{p}: unusable cached root of trust ({e}); fix or delete it") from None

    def remember(self, loc: S3Url, trust: TrustRoot) -> None:
        atomic_write(self._path(loc), trust.md.to_bytes())


def refresh_root(pinned: TrustRoot, store: S3Store, loc: S3Url, memory: RootMemory | None = None) -> TrustRoot:
    """The newest root the bucket's chain leads to from what this host trusts; not expired."""
    memory = memory or RootMemory()
    cached = memory.load(loc)
    start = cached if cached is not None and cached.version > pinned.version else pinned

    def get(version: int) -> tuple[bytes, str] | None:
        key = root_key(loc, version)
        raw = _get(store, key)
        return None if raw is None else (raw, f"s3://{store.bucket}/{key}")

    md = walk_roots(start.md, get)
    newest = start if md is start.md else TrustRoot(md, f"s3://{store.bucket}/{root_key(loc, md.signed.version)}")
    newest.check_fresh()
    if cached is None or newest.version > cached.version:
        memory.remember(loc, newest)
    return newest


def _stored_versions(store: S3Store, loc: S3Url) -> list[int]:
    out = []
    for n in store.list_children(loc.key("roots"), folders=False):
        v = n.removesuffix(".root.json")
        if n.endswith(".root.json") and v.isascii() and v.isdigit() and v == str(int(v)):
            out.append(int(v))
    return sorted(out)


def push_root(store: S3Store, loc: S3Url, raw: bytes, origin: str) -> dict[str, Any]:
    """Upload a root version as roots/<N>.root.json: the first (self-signed to threshold) or exactly
    the next after the newest the bucket's chain reaches, signed by a threshold of that one's root
    keys and of its own. Never overwrites a stored version."""
    md = parse_root(raw, origin)
    raw = md.to_bytes()  # the canonical form of what was checked
    have = _stored_versions(store, loc)
    if not have:
        TrustRoot.from_bytes(raw, origin)
    else:
        first = _get(store, root_key(loc, have[0]))
        if first is None:
            raise PublishError(f"s3://{store.bucket}/{root_key(loc, have[0])}: vanished while reading")
        newest = TrustRoot.from_bytes(first, f"s3://{store.bucket}/{root_key(loc, have[0])}").md
        newest = walk_roots(newest, lambda v: (b, root_key(loc, v)) if (b := _get(store, root_key(loc, v))) else None)
        if md.signed.version <= newest.signed.version:
            stored = _get(store, root_key(loc, md.signed.version))
            if stored is not None and parse_root(stored, origin).to_bytes() == raw:
                return {"version": md.signed.version, "status": "unchanged",
                        "url": f"s3://{store.bucket}/{root_key(loc, md.signed.version)}"}
        verify_root_update(newest, raw, origin)
    key = root_key(loc, md.signed.version)
    if not store.put(key, raw, if_none_match=True, content_type="application/json"):
        raise PublishError(f"s3://{store.bucket}/{key}: another root v{md.signed.version} is already stored")
    return {"version": md.signed.version, "status": "uploaded", "url": f"s3://{store.bucket}/{key}",
            "expires": json.loads(raw)["signed"]["expires"]}
