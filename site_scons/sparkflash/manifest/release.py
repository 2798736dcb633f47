"""A release on disk: canonical manifest, detached signature and content-addressed blobs.

Layout (the same locally and under an S3 prefix):
    manifest.json            canonical bytes (see model.Manifest.canonical)
    manifest.json.sig        {"alg": "ed25519", "key_id": ..., "signature": base64}
    blobs/sha256/<hex>       one file per distinct region content

`open_release` refuses an unsigned, tampered or unknown-key manifest, and `Release.blob`
refuses a blob whose digest or size differs, so nothing unverified reaches a transport.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from sparkflash import names
from sparkflash.errors import InputError, VerifyError
from sparkflash.manifest.keys import Signer, TrustStore
from sparkflash.manifest.model import MANIFEST_NAME, SIGNATURE_NAME, Manifest, Region

__all__ = [
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "Signature",
    "Release",
    "blob_key",
    "digests",
    "store_blob",
    "sign_manifest",
    "open_release",
]



def blob_key(sha256_hex: str) -> str:
    """Content address of a blob, relative to the store root (only a valid digest is a key)."""
    return f"blobs/sha256/{names.digest(sha256_hex)}"


def digests(data: bytes) -> tuple[str, int]:
    return hashlib.sha256(data).hexdigest(), zlib.crc32(data) & 0xFFFFFFFF


def atomic_write(path: Path, data: bytes) -> None:
    """Write whole or not at all: a crash never leaves a half file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def store_blob(root: Path, data: bytes) -> str:
    sha, _ = digests(data)
    p = root / blob_key(sha)
    if not p.exists():
        atomic_write(p, data)
    return sha


@dataclass(frozen=True)
class Signature:
    key_id: str
    signature: bytes

    def to_bytes(self) -> bytes:
        d = {"alg": "ed25519", "key_id": self.key_id, "signature": base64.b64encode(self.signature).decode()}
        return (json.dumps(d, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes, origin: str) -> Signature:
        try:
            d = json.loads(raw)
            if d["alg"] != "ed25519":
                raise ValueError(f"unsupported alg {d['alg']!r}")
            sig = cls(names.key_id(d["key_id"]), base64.b64decode(d["signature"], validate=True))
        except (ValueError, KeyError, TypeError, AttributeError, InputError) as e:
            raise VerifyError(f"{origin}: malformed signature file: {e}") from e
        if sig.to_bytes() != raw:
            raise VerifyError(f"{origin}: signature file is not in canonical form")
        return sig


def sign_manifest(manifest_path: Path, signer: Signer) -> Path:
    raw = manifest_path.read_bytes()
    Manifest.from_bytes(raw, str(manifest_path))  # never sign something that does not parse
    sig = Signature(signer.key_id, signer.sign(raw))
    out = manifest_path.with_name(SIGNATURE_NAME)
    atomic_write(out, sig.to_bytes())
    return out


@dataclass
class Release:
    manifest: Manifest
    raw: bytes
    signature: Signature | None
    blob_dir: Path  # the store root: blobs are at blob_dir / blob_key(sha256)

    def blob(self, region: Region) -> bytes:
        """The region's bytes, checked against the signed digest and size."""
        p = self.blob_dir / blob_key(region.sha256)
        try:
            size = p.stat().st_size
        except FileNotFoundError as e:
            raise VerifyError(f"region {region.name!r}: blob {p} is missing") from e
        if size != region.size:  # checked before reading: a huge or sparse file is never read
            raise VerifyError(f"region {region.name!r}: blob {p} is {size} bytes, the manifest says {region.size}")
        try:
            from sparkflash.manifest.sources import read_regular

            data = read_regular(p, region.size)
        except InputError as e:
            raise VerifyError(f"region {region.name!r}: {e}") from None
        sha, crc = digests(data)
        if sha != region.sha256 or len(data) != region.size or crc != region.crc32:
            raise VerifyError(
                f"region {region.name!r}: blob {p} does not match the manifest "
                f"(sha256 {sha[:16]}… size {len(data)}, expected {region.sha256[:16]}… size {region.size})"
            )
        return data

    def verify_blobs(self) -> None:
        for r in self.manifest.regions:
            self.blob(r)


def open_release(
    manifest_path: Path,
    trust: TrustStore | None,
    *,
    blob_dir: Path | None = None,
    require_signature: bool = True,
) -> Release:
    """Load and verify a release. `trust=None` with require_signature=False skips the signature."""
    try:
        raw = manifest_path.read_bytes()
    except FileNotFoundError as e:
        raise InputError(f"{manifest_path}: no such manifest") from e
    try:
        manifest = Manifest.from_bytes(raw, str(manifest_path))
    except InputError as e:
        raise VerifyError(str(e)) from e
    sig_path = manifest_path.with_name(SIGNATURE_NAME)
    sig: Signature | None = None
    if sig_path.exists():
        sig = Signature.from_bytes(sig_path.read_bytes(), str(sig_path))
    if require_signature:
        if sig is None:
            raise VerifyError(f"{manifest_path}: unsigned release (no {SIGNATURE_NAME}); sign it or pass --no-verify-signature")
        if trust is None or sig.key_id not in trust.keys:
            raise VerifyError(f"{manifest_path}: signed by unknown key {sig.key_id[:16]}…; add its public key with --trust")
        if not trust.verify(sig.key_id, sig.signature, raw):
            raise VerifyError(f"{manifest_path}: signature does not match the manifest (tampered?)")
    return Release(manifest, raw, sig, blob_dir or manifest_path.parent)
