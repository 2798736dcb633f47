"""What the cloud server accepts as a release: signed manifests and blobs by digest only.

Everything here comes from the admin API, i.e. from outside: a manifest is accepted only
with a signature from the server's trust store (unless the server was started with the
explicit insecure flag, for tests); its regions' blobs come only from the server's own
content-addressed store (`STORE/blobs/sha256/<64 hex>`), filled by `PUT /v1/blobs/<sha256>`
or from a release directory on the server host. Files are opened non-blocking and must be
regular files under a size cap, so a FIFO or a device node is refused at once; reading runs
in a worker thread, never on the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from sparkflash.errors import InputError, VerifyError
from sparkflash.manifest.keys import TrustStore
from sparkflash.manifest.model import SIGNATURE_NAME, Manifest
from sparkflash.manifest.release import Release, Signature, atomic_write, blob_key
from sparkflash.manifest.sources import read_regular

__all__ = ["BLOB_CAP", "MANIFEST_CAP", "BlobStore", "release_from_dir", "release_from_post"]

SHA256 = re.compile(r"[0-9a-f]{64}")
MANIFEST_CAP = 256 * 1024
BLOB_CAP = 2 * 1024 * 1024  # the largest thing a Core holds (its external flash)


class BlobStore:
    """The server's own content-addressed blobs (the same layout as a release directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if not SHA256.fullmatch(sha256):
            raise InputError(f"blob digest {sha256[:80]!r} is not 64 lowercase hex digits")
        return self.root / blob_key(sha256)

    def put(self, sha256: str, data: bytes) -> bool:
        """Store `data` under its digest; False if it was already there. VerifyError if it does not match."""
        p = self.path(sha256)
        if len(data) > BLOB_CAP:
            raise InputError(f"blob {sha256[:16]}…: {len(data)} bytes, more than the {BLOB_CAP}-byte limit")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise VerifyError(f"blob {sha256[:16]}…: the data's SHA-256 is {hashlib.sha256(data).hexdigest()[:16]}…")
        if p.exists():
            return False
        atomic_write(p, data)
        return True

    def put_b64(self, sha256: str, text: object) -> bool:
        if not isinstance(text, str):
            raise InputError("blob body needs 'data': base64 text")
        try:
            data = base64.b64decode(text, validate=True)
        except ValueError as e:
            raise InputError(f"blob {sha256[:16]}…: 'data' is not base64 ({e})") from None
        return self.put(sha256, data)


def _check(manifest: Manifest, sig: Signature | None, raw: bytes, trust: TrustStore | None, insecure: bool,
           origin: str) -> None:
    for r in manifest.regions:
        if not SHA256.fullmatch(r.sha256):
            raise InputError(f"{origin}: region {r.name!r}: sha256 {r.sha256[:80]!r} is not 64 lowercase hex digits")
    if insecure and (sig is None or trust is None):  # tests only: nothing to check it against
        return
    if trust is None:
        raise VerifyError(f"{origin}: the server has no trust store (start it with --trust KEY); "
                          "it deploys only signed releases")
    if sig is None:
        raise VerifyError(f"{origin}: unsigned release; sign it (sparkflash manifest sign) — the server deploys "
                          "only releases signed by a key in its --trust store")
    if sig.key_id not in trust.keys:
        raise VerifyError(f"{origin}: signed by unknown key {sig.key_id[:16]}…; the server does not trust it")
    if not trust.verify(sig.key_id, sig.signature, raw):
        raise VerifyError(f"{origin}: signature does not match the manifest (tampered?)")


def release_from_post(manifest_json: object, signature_json: object, store: BlobStore, trust: TrustStore | None,
                      insecure: bool) -> Release:
    """A release posted as text; its blobs must already be in the server's store."""
    if not isinstance(manifest_json, str) or len(manifest_json) > MANIFEST_CAP:
        raise InputError(f"'manifest_json' must be the manifest's text (at most {MANIFEST_CAP} bytes)")
    raw = manifest_json.encode()
    origin = "POST /v1/deployments"
    manifest = Manifest.from_bytes(raw, origin)
    sig = None
    if signature_json is not None:
        if not isinstance(signature_json, str) or len(signature_json) > 4096:
            raise InputError("'signature_json' must be the text of manifest.json.sig")
        sig = Signature.from_bytes(signature_json.encode(), origin)
    _check(manifest, sig, raw, trust, insecure, origin)
    return Release(manifest, raw, sig, store.root)


def release_from_dir(path: Path, store: BlobStore, trust: TrustStore | None, insecure: bool) -> Release:
    """A release directory (or its manifest.json) on the server host: read, checked, blobs copied into the store.

    Blocking: call it from a worker thread."""
    mpath = path / "manifest.json" if path.is_dir() else path
    raw = read_regular(mpath, MANIFEST_CAP)
    manifest = Manifest.from_bytes(raw, str(mpath))
    spath = mpath.with_name(SIGNATURE_NAME)
    sig = Signature.from_bytes(read_regular(spath, 4096), str(spath)) if spath.exists() else None
    _check(manifest, sig, raw, trust, insecure, str(mpath))
    for r in manifest.regions:
        if not store.path(r.sha256).exists():
            store.put(r.sha256, read_regular(mpath.parent / blob_key(r.sha256), BLOB_CAP))
    return Release(manifest, raw, sig, store.root)
