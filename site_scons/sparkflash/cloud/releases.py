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
import threading
from pathlib import Path

from sparkflash.errors import InputError, VerifyError
from sparkflash.manifest.model import SIGNATURE_NAME, Manifest
from sparkflash.manifest.release import Release, Signature, atomic_write, blob_key, verify_manifest_signature
from sparkflash.manifest.sources import read_regular
from sparkflash.manifest.trust import Trust

__all__ = ["BLOB_CAP", "MANIFEST_CAP", "BlobStore", "ReleaseSource", "release_from_dir", "release_from_post"]

SHA256 = re.compile(r"[0-9a-f]{64}")
MANIFEST_CAP = 256 * 1024
SIGNATURE_CAP = 16 * 1024  # manifest.json.sig with up to 32 signatures (k-of-n)
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


def _check(manifest: Manifest, sig: Signature | None, raw: bytes, trust: Trust | None, insecure: bool,
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
    verify_manifest_signature(trust, raw, sig, origin)


def release_from_post(manifest_json: object, signature_json: object, store: BlobStore, trust: Trust | None,
                      insecure: bool) -> Release:
    """A release posted as text; its blobs must already be in the server's store."""
    if not isinstance(manifest_json, str) or len(manifest_json) > MANIFEST_CAP:
        raise InputError(f"'manifest_json' must be the manifest's text (at most {MANIFEST_CAP} bytes)")
    raw = manifest_json.encode()
    origin = "POST /v1/deployments"
    manifest = Manifest.from_bytes(raw, origin)
    sig = None
    if signature_json is not None:
        if not isinstance(signature_json, str) or len(signature_json) > SIGNATURE_CAP:
            raise InputError("'signature_json' must be the text of manifest.json.sig")
        sig = Signature.from_bytes(signature_json.encode(), origin)
    _check(manifest, sig, raw, trust, insecure, origin)
    return Release(manifest, raw, sig, store.root)


def release_from_dir(path: Path, store: BlobStore, trust: Trust | None, insecure: bool) -> Release:
    """A release directory (or its manifest.json) on the server host: read, checked, blobs copied into the store.

    Blocking: call it from a worker thread."""
    mpath = path / "manifest.json" if path.is_dir() else path
    raw = read_regular(mpath, MANIFEST_CAP)
    manifest = Manifest.from_bytes(raw, str(mpath))
    spath = mpath.with_name(SIGNATURE_NAME)
    sig = Signature.from_bytes(read_regular(spath, SIGNATURE_CAP), str(spath)) if spath.exists() else None
    _check(manifest, sig, raw, trust, insecure, str(mpath))
    for r in manifest.regions:
        if not store.path(r.sha256).exists():
            store.put(r.sha256, read_regular(mpath.parent / blob_key(r.sha256), BLOB_CAP))
    return Release(manifest, raw, sig, store.root)


class ReleaseSource:
    """Releases by reference, as deployments and rollouts name them; every one verified here.

    `stored:SHA256` is a signed manifest posted through the admin API, kept in the server's own
    store with its signature (so a restarted server can verify it again); `s3://.../releases/NAME/
    VERSION` and `channel:s3://.../NAME#CHANNEL` are fetched by the server itself through the
    publish client (signature with the server's trust store, the channel record, every blob's
    digest), their blobs cached by digest in the same store. A channel is resolved once, when the
    rollout is created: the rollout then names the release it found, so every device (and a
    resumed deployment) gets the same one. Blocking: call from a worker thread."""

    def __init__(self, blobs: BlobStore, trust: Trust | None, insecure: bool, *,
                 endpoint_url: str | None = None) -> None:
        self.blobs, self.trust, self.insecure, self.endpoint_url = blobs, trust, insecure, endpoint_url
        self._open: dict[str, Release] = {}
        # one fetch at a time: an instance's first claims of a rollout made elsewhere all open its release at
        # once, and concurrent fetches of one release into the same cache directory raced on its files
        self._lock = threading.RLock()

    def _paths(self, sha256: str) -> tuple[Path, Path]:
        if not SHA256.fullmatch(sha256):
            raise InputError(f"release digest {sha256[:80]!r} is not 64 lowercase hex digits")
        d = self.blobs.root / "releases"
        return d / f"{sha256}.json", d / f"{sha256}.json.sig"

    def save(self, release: Release) -> str:
        """Keep an accepted (already verified) release; its reference."""
        sha = hashlib.sha256(release.raw).hexdigest()
        mpath, spath = self._paths(sha)
        if release.signature is not None:
            atomic_write(spath, release.signature.to_bytes())
        atomic_write(mpath, release.raw)
        self._open[f"stored:{sha}"] = release
        return f"stored:{sha}"

    def resolve(self, ref: str) -> tuple[str, Release]:
        """At creation: (the reference to keep, the verified release). A channel becomes its release's URL."""
        from sparkflash.fleet.ids import CHANNEL_REF, release_ref

        release_ref(ref)
        m = CHANNEL_REF.fullmatch(ref)
        if m is None:
            return ref, self.open(ref)
        with self._lock:
            rel = self._fetch(m["url"], m["channel"])
            root = m["url"].rsplit("/", 1)[0]
            pinned = f"{root}/releases/{rel.manifest.name}/{rel.manifest.version}"
            self._open[pinned] = rel
        return pinned, rel

    def open(self, ref: str) -> Release:
        """The verified release a kept reference names (fetched and checked once per server process)."""
        with self._lock:
            return self._open_locked(ref)

    def _open_locked(self, ref: str) -> Release:
        if ref in self._open:
            return self._open[ref]
        if ref.startswith("stored:"):
            mpath, spath = self._paths(ref[len("stored:"):])
            if not mpath.is_file():
                raise InputError(f"release {ref}: not in the server's store {self.blobs.root}")
            raw = read_regular(mpath, MANIFEST_CAP)
            if hashlib.sha256(raw).hexdigest() != ref[len("stored:"):]:
                raise VerifyError(f"{mpath}: the stored manifest does not match its digest (altered on disk?)")
            sig = Signature.from_bytes(read_regular(spath, SIGNATURE_CAP), str(spath)) if spath.exists() else None
            manifest = Manifest.from_bytes(raw, str(mpath))
            _check(manifest, sig, raw, self.trust, self.insecure, str(mpath))
            rel = Release(manifest, raw, sig, self.blobs.root)
        elif ref.startswith("s3://"):
            rel = self._fetch(ref, None)
        else:
            raise InputError(f"release {ref}: expected stored:SHA256 or s3://... (a channel is resolved at creation)")
        self._open[ref] = rel
        return rel

    def _fetch(self, url: str, channel: str | None) -> Release:
        from sparkflash.publish.channel import ChannelMemory
        from sparkflash.publish.fetch import fetch_release

        if self.trust is None and not self.insecure:
            raise VerifyError(f"{url}: the server has no trust store (start it with --trust KEY); "
                              "it deploys only signed releases")
        path = fetch_release(url, channel=channel, cache=self.blobs.root, endpoint_url=self.endpoint_url,
                             trust=self.trust, require_signature=not self.insecure,
                             channel_memory=ChannelMemory(self.blobs.root / "channels"))
        raw = read_regular(path, MANIFEST_CAP)
        spath = path.with_name(SIGNATURE_NAME)
        sig = Signature.from_bytes(read_regular(spath, SIGNATURE_CAP), str(spath)) if spath.exists() else None
        manifest = Manifest.from_bytes(raw, str(path))
        _check(manifest, sig, raw, self.trust, self.insecure, url)
        for r in manifest.regions:  # fetch_release checked each blob; they are in the store by digest now
            if not self.blobs.path(r.sha256).is_file():
                raise VerifyError(f"{url}: blob of region {r.name!r} missing from the cache after the fetch")
        return Release(manifest, raw, sig, self.blobs.root)
