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
from sparkflash.manifest.keys import Signer
from sparkflash.manifest.model import MANIFEST_NAME, SIGNATURE_NAME, Manifest, Region
from sparkflash.manifest.trust import ROLE_MANIFEST, Trust, verify_signatures

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
    "verify_manifest_signature",
]

MAX_SIGNATURES = 32



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
    """manifest.json.sig: one or more Ed25519 signatures over the manifest bytes (k-of-n).

    One signature keeps the original form {"alg", "key_id", "signature"} (byte-identical to what
    older releases carry); more are {"alg": "ed25519", "signatures": [{"key_id", "signature"}, ...]},
    sorted by key id so that the same set of signers always writes the same bytes."""

    key_id: str  # the first signer (named in messages)
    signature: bytes
    more: tuple[tuple[str, bytes], ...] = ()

    @property
    def all(self) -> list[tuple[str, bytes]]:
        return [(self.key_id, self.signature), *self.more]

    @classmethod
    def of(cls, sigs: list[tuple[str, bytes]]) -> Signature:
        by_key = dict(sigs)  # one signature per key: a key signing twice still counts once
        if not by_key:
            raise ValueError("no signatures")
        ordered = sorted(by_key.items())
        return cls(ordered[0][0], ordered[0][1], tuple(ordered[1:]))

    def to_bytes(self) -> bytes:
        if not self.more:
            d: dict[str, object] = {"alg": "ed25519", "key_id": self.key_id,
                                    "signature": base64.b64encode(self.signature).decode()}
        else:
            d = {"alg": "ed25519", "signatures": [{"key_id": k, "signature": base64.b64encode(s).decode()}
                                                  for k, s in self.all]}
        return (json.dumps(d, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes, origin: str) -> Signature:
        try:
            d = json.loads(raw)
            if d["alg"] != "ed25519":
                raise ValueError(f"unsupported alg {d['alg']!r}")
            entries = d["signatures"] if "signatures" in d else [d]
            if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SIGNATURES:
                raise ValueError(f"'signatures' must list 1 to {MAX_SIGNATURES} signatures")
            sig = cls.of([(names.key_id(e["key_id"]), base64.b64decode(e["signature"], validate=True)) for e in entries])
        except (ValueError, KeyError, TypeError, AttributeError, InputError) as e:
            raise VerifyError(f"{origin}: malformed signature file: {e}") from e
        if sig.to_bytes() != raw:
            raise VerifyError(f"{origin}: signature file is not in canonical form")
        return sig


def sign_manifest(manifest_path: Path, signer: Signer | list[Signer], *, add: bool = False) -> Path:
    """Write manifest.json.sig signed by each signer; with `add`, keep the signatures already there
    (a co-signer adds theirs: k-of-n). Without `add` the file is replaced (a rebuilt manifest's
    old signatures would not match it)."""
    raw = manifest_path.read_bytes()
    Manifest.from_bytes(raw, str(manifest_path))  # never sign something that does not parse
    out = manifest_path.with_name(SIGNATURE_NAME)
    sigs: list[tuple[str, bytes]] = []
    if add and out.exists():
        sigs = Signature.from_bytes(out.read_bytes(), str(out)).all
    for s in signer if isinstance(signer, list) else [signer]:
        sigs = [(k, v) for k, v in sigs if k != s.key_id] + [(s.key_id, s.sign(raw))]
    atomic_write(out, Signature.of(sigs).to_bytes())
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
    trust: Trust | None,
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
        if trust is None:
            raise VerifyError(f"{manifest_path}: signed by unknown key {sig.key_id[:16]}…; add its public key with --trust")
        verify_manifest_signature(trust, raw, sig, str(manifest_path))
    return Release(manifest, raw, sig, blob_dir or manifest_path.parent)


def verify_manifest_signature(trust: Trust, raw: bytes, sig: Signature, origin: str) -> list[str]:
    """A threshold of the manifest role's keys signed these manifest bytes (the key ids that did)."""
    return verify_signatures(trust, ROLE_MANIFEST, raw, sig.all, origin, "manifest")
