"""Publish a signed release directory to S3 so that no half release is ever visible.

Object layout under s3://BUCKET/PREFIX/ (the same shape as a local release directory):
    blobs/sha256/<hex>                          content-addressed, shared by every release
    releases/<name>/<version>/manifest.json     canonical bytes; its existence IS the release
    releases/<name>/<version>/manifest.json.sig
    channels/<name>/<channel>.json              signed record -> version + manifest sha256

Order matters: every blob, then the signature, then the manifest with If-None-Match: *
(the commit point; a second publisher of the same version loses the race and is refused
unless its bytes are identical), then the channel record. A publish interrupted at any
point leaves no manifest, and a rerun skips blobs already present (HEAD).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sparkflash import names
from sparkflash.errors import InputError, PublishError, VerifyError
from sparkflash.manifest.keys import Signer
from sparkflash.manifest.release import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Release,
    Signature,
    blob_key,
    open_release,
    verify_manifest_signature,
)
from sparkflash.manifest.trust import Trust, TrustRoot
from sparkflash.publish.channel import (
    ChannelRecord,
    format_time,
    open_channel,
    sign_channel,
)
from sparkflash.publish.roots import refresh_root
from sparkflash.publish.store import (
    ClientOptions,
    S3Store,
    S3Url,
    open_store,
    parse_s3_url,
    release_keys,
)

__all__ = ["BlobResult", "PublishOptions", "PublishReport", "publish"]

EventFn = Callable[[dict[str, Any]], None]
MiB = 1024 * 1024


def _noop(_: dict[str, Any]) -> None:
    pass


@dataclass(frozen=True)
class PublishOptions:
    multipart_threshold: int = 16 * MiB  # S3 needs parts >= 5 MiB (except the last)
    part_size: int = 8 * MiB
    create_bucket: bool = False
    channel_ttl: timedelta = timedelta(days=30)  # a channel not moved again within this stops deploying


@dataclass
class BlobResult:
    sha256: str
    size: int
    regions: list[str]
    status: str = "pending"  # "uploaded" | "present" | "repaired"

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "regions": self.regions, "status": self.status}


@dataclass
class PublishReport:
    url: str
    name: str
    version: str
    manifest_sha256: str
    manifest_status: str = "pending"  # "created" | "unchanged" | "signatures-added"
    blobs: list[BlobResult] = field(default_factory=list)
    channel: dict[str, Any] | None = None
    replaced_orphan_signature: bool = False  # an interrupted publish had left a signature without manifest

    @property
    def bytes_uploaded(self) -> int:
        return sum(b.size for b in self.blobs if b.status in ("uploaded", "repaired"))

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url, "name": self.name, "version": self.version,
            "manifest_sha256": self.manifest_sha256, "manifest": self.manifest_status,
            "blobs": [b.to_json() for b in self.blobs],
            "blobs_uploaded": sum(1 for b in self.blobs if b.status in ("uploaded", "repaired")),
            "bytes_uploaded": self.bytes_uploaded, "channel": self.channel,
            "replaced_orphan_signature": self.replaced_orphan_signature,
        }


def _load_local(dist: Path, signers: list[Signer], trust: Trust | None) -> Release:
    """The release to publish, its signature and every blob checked: never publish what cannot deploy."""
    mpath = dist / MANIFEST_NAME if dist.is_dir() else dist
    rel = open_release(mpath, None, blob_dir=mpath.parent, require_signature=False)
    sig = rel.signature
    if sig is None:
        raise VerifyError(f"{mpath}: unsigned release (no {SIGNATURE_NAME}); sign it first (scons sign)")
    if trust is not None:
        verify_manifest_signature(trust, rel.raw, sig, str(mpath))
    elif not signers:
        raise InputError(f"{mpath}: pass --key or --trust so the release signature can be checked before publishing")
    else:
        mine = {s.key_id: s for s in signers}
        ours = [(k, v) for k, v in sig.all if k in mine]
        if not ours:
            raise VerifyError(f"{mpath}: signed by key {sig.key_id[:16]}…, which is neither --key nor in --trust")
        if not all(mine[k].sign(rel.raw) == v for k, v in ours):  # Ed25519 is deterministic
            raise VerifyError(f"{mpath}: signature does not match the manifest (edited after signing?)")
    rel.verify_blobs()
    return rel


def _stored_digest_matches(store: S3Store, key: str, b: BlobResult, head: dict[str, Any]) -> bool:
    """Does the object at `key` hold exactly the blob? A wrong size or stored whole-object SHA-256
    says no at once; otherwise the object is read back and hashed while streaming (bounded
    memory): a stored checksum is metadata, and a server that does not validate it (moto) can
    hold other bytes under the right one. A same-size object with other bytes is repaired."""
    if head.get("ContentLength") != b.size:
        return False
    stored = head.get("ChecksumSHA256")
    if isinstance(stored, str) and "-" not in stored and stored != base64.b64encode(bytes.fromhex(b.sha256)).decode():
        return False  # ("-N" is a composite multipart checksum, not the object's digest)
    chunks = store.iter_get(key)
    if chunks is None:
        return False
    h, n = hashlib.sha256(), 0
    for c in chunks:
        n += len(c)
        if n > b.size:
            return False
        h.update(c)
    return n == b.size and h.hexdigest() == b.sha256


def _upload_blob(store: S3Store, key: str, data: bytes, b: BlobResult, opts: PublishOptions, on_event: EventFn) -> None:
    head = store.head(key)
    status = "uploaded"
    if head is not None:
        if _stored_digest_matches(store, key, b, head):
            b.status = "present"
            on_event({"event": "blob-done", "sha256": b.sha256, "size": b.size, "status": b.status})
            return
        status = "repaired"  # a content address holding other bytes: overwrite with the right ones
    on_event({"event": "blob-start", "sha256": b.sha256, "size": b.size, "regions": b.regions})

    def progress(done: int, total: int) -> None:
        on_event({"event": "progress", "blob": b.sha256, "done": done, "total": total})

    if b.size >= opts.multipart_threshold:
        fresh = store.put_multipart(key, data, opts.part_size, progress, if_none_match=status == "uploaded")
    else:
        fresh = store.put(key, data, if_none_match=status == "uploaded")
        progress(b.size, b.size)
    b.status = status if fresh else "present"  # lost a race to an identical upload
    on_event({"event": "blob-done", "sha256": b.sha256, "size": b.size, "status": b.status})


def _adds_signatures(stored: bytes | None, sig: Signature, where: str) -> bool:
    """Does `sig` hold every signature of the stored file and more? (Then it may replace it.)"""
    if stored is None:
        return False
    try:
        old = set(Signature.from_bytes(stored, where + ".sig").all)
    except VerifyError:
        return False
    return old < set(sig.all)


def _commit_manifest(store: S3Store, loc: S3Url, rel: Release, sig: Signature, report: PublishReport) -> None:
    """Signature, then manifest, each with If-None-Match: of racing publishers exactly one pair
    lands, nothing is overwritten, and the manifest (what makes a release visible) comes last.
    Ed25519 is deterministic, so a rerun of the same release by the same key matches bit for bit."""
    m = rel.manifest
    mkey, skey = release_keys(loc, m.name, m.version)
    sig_raw = sig.to_bytes()
    where = f"s3://{store.bucket}/{mkey}"
    if not store.put(skey, sig_raw, if_none_match=True, content_type="application/json") and store.get(skey) != sig_raw:
        existing = store.get(mkey)
        if existing == rel.raw:
            report.manifest_status = "unchanged"  # the same release, signed by another trusted key
            if _adds_signatures(store.get(skey), sig, where):  # a co-signer's (k-of-n): keep every old one
                store.put(skey, sig_raw, if_none_match=False, content_type="application/json")
                report.manifest_status = "signatures-added"
            return
        if existing is not None:
            raise PublishError(f"{where}: {m.name} {m.version} is already published with different content; "
                               "a release is immutable: bump the version")
        # A signature without its manifest is not a release (the manifest is the commit point):
        # it is what an interrupted publish leaves behind, so this publish replaces it.
        store.put(skey, sig_raw, if_none_match=False, content_type="application/json")
        report.replaced_orphan_signature = True
    if store.put(mkey, rel.raw, if_none_match=True, content_type="application/json"):
        report.manifest_status = "created"
        if store.get(skey) != sig_raw:  # a racing publisher replaced "our orphan" in between: put ours back
            store.put(skey, sig_raw, if_none_match=False, content_type="application/json")
    elif store.get(mkey) == rel.raw:
        report.manifest_status = "unchanged"
    else:
        raise PublishError(f"{where}: {m.name} {m.version} is already published with different content; "
                           "a release is immutable: bump the version")


def _check_channel(channel: str, signers: list[Signer]) -> list[Signer]:
    """Before anything is uploaded: a channel move that cannot happen fails the publish up front."""
    if not signers:
        raise InputError(f"--channel {channel}: a channel record must be signed; pass --key")
    names.channel(channel, "--channel")
    return signers


def _previous_sequence(raw: bytes) -> tuple[int, str]:
    """(sequence, version) of the record being replaced; a v1 record (no sequence) counts as 0."""
    try:
        rec, _ = open_channel(raw, "previous", None)
        return rec.sequence, rec.version
    except VerifyError:
        try:
            doc = json.loads(raw)
            return int(doc["record"].get("sequence", 0)), str(doc["record"].get("version", "?"))[:64]
        except (ValueError, KeyError, TypeError, AttributeError):
            return 0, "?"


def _move_channel(store: S3Store, loc: S3Url, rel: Release, channel: str, signers: list[Signer],
                  opts: PublishOptions, trust: Trust | None) -> dict[str, Any]:
    """The next record: sequence = the stored one's + 1, expiry = now + channel_ttl; given a root,
    checked against its channel role before it is stored (a record no reader accepts never lands)."""
    m = rel.manifest
    key = loc.key("channels", m.name, f"{channel}.json")
    previous = store.get(key)
    seq, prev_version = _previous_sequence(previous) if previous is not None else (0, "")
    expires = format_time(datetime.now(UTC) + opts.channel_ttl)
    rec = ChannelRecord(m.name, channel, m.version, hashlib.sha256(rel.raw).hexdigest(), seq + 1, expires)
    doc = sign_channel(rec, signers)
    if trust is not None:
        open_channel(doc, f"s3://{store.bucket}/{key} (not stored)", trust)
    store.put(key, doc, if_none_match=False, content_type="application/json")
    return {"channel": channel, "url": f"s3://{store.bucket}/{key}", "version": m.version, "previous": prev_version,
            "sequence": rec.sequence, "expires": rec.expires}


def publish(
    dist: Path,
    url: str,
    *,
    signer: Signer | list[Signer] | None = None,
    trust: Trust | None = None,
    channel: str | None = None,
    client_options: ClientOptions | None = None,
    options: PublishOptions | None = None,
    on_event: EventFn = _noop,
    store: S3Store | None = None,
) -> PublishReport:
    """Upload DIST (a signed release directory) under s3://BUCKET/PREFIX; see the module doc for order."""
    opts = options or PublishOptions()
    loc = parse_s3_url(url)
    signers = signer if isinstance(signer, list) else [] if signer is None else [signer]
    channel_signers = _check_channel(channel, signers) if channel else []
    if store is None:
        store = open_store(loc.bucket, client_options or ClientOptions())
    if isinstance(trust, TrustRoot):  # verify with the newest root the bucket's chain leads to
        store.ensure_bucket(opts.create_bucket)
        trust = refresh_root(trust, store, loc)
    rel = _load_local(dist, signers, trust)
    assert rel.signature is not None
    m = rel.manifest
    store.ensure_bucket(opts.create_bucket)
    report = PublishReport(loc.url("releases", m.name, m.version), m.name, m.version,
                           hashlib.sha256(rel.raw).hexdigest())
    by_digest: dict[str, BlobResult] = {}
    for r in m.regions:
        by_digest.setdefault(r.sha256, BlobResult(r.sha256, r.size, [])).regions.append(r.name)
    report.blobs = list(by_digest.values())
    on_event({"event": "publish-start", "release": m.name, "version": m.version, "url": report.url,
              "blobs": len(report.blobs)})
    for b in report.blobs:
        data = rel.blob(m.region(b.regions[0]))
        _upload_blob(store, loc.key(blob_key(b.sha256)), data, b, opts, on_event)
    _commit_manifest(store, loc, rel, rel.signature, report)
    on_event({"event": "manifest-done", "url": report.url, "status": report.manifest_status})
    if channel and channel_signers:
        report.channel = _move_channel(store, loc, rel, channel, channel_signers, opts, trust)
        on_event({"event": "channel-done", **report.channel})
    on_event({"event": "publish-done", "bytes_uploaded": report.bytes_uploaded})
    return report
