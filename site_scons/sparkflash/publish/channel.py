"""Signed channel records: `channels/<name>/<channel>.json` says which version is "stable".

Record and signature travel in ONE object so that moving a channel is a single atomic
PUT: a reader never sees a new record with an old signature. The record pins the exact
manifest bytes (sha256), so a channel cannot be pointed at content that was never signed,
even if `releases/<name>/<version>/` were somehow replaced.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from sparkflash import names
from sparkflash.errors import InputError, VerifyError
from sparkflash.manifest.keys import Signer, TrustStore

__all__ = ["CHANNEL_FORMAT", "ChannelRecord", "sign_channel", "open_channel"]

CHANNEL_FORMAT = "sparkflash-channel/1"


def _canonical(d: dict[str, Any]) -> bytes:
    return (json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode()


@dataclass(frozen=True)
class ChannelRecord:
    name: str
    channel: str
    version: str
    manifest_sha256: str

    def to_json(self) -> dict[str, str]:
        return {"format": CHANNEL_FORMAT, "name": self.name, "channel": self.channel,
                "version": self.version, "manifest_sha256": self.manifest_sha256}

    def payload(self) -> bytes:
        """The bytes the signature covers."""
        return _canonical(self.to_json())


def sign_channel(record: ChannelRecord, signer: Signer) -> bytes:
    """The object stored at channels/<name>/<channel>.json."""
    doc = {"record": record.to_json(), "alg": "ed25519", "key_id": signer.key_id,
           "signature": base64.b64encode(signer.sign(record.payload())).decode()}
    return _canonical(doc)


def open_channel(raw: bytes, origin: str, trust: TrustStore | None) -> tuple[ChannelRecord, str]:
    """Parse (and, given a trust store, verify) a channel object; returns (record, key_id).

    With trust=None the signature is not checked here: the manifest it points to is
    still pinned by digest and its own signature is checked by `open_release`.
    """
    try:
        doc = json.loads(raw)
        r = doc["record"]
        if r.get("format") != CHANNEL_FORMAT or doc.get("alg") != "ed25519":
            raise ValueError(f"not a {CHANNEL_FORMAT} ed25519 record")
        rec = ChannelRecord(names.release_name(r["name"]), names.channel(r["channel"]), names.version(r["version"]),
                            names.digest(r["manifest_sha256"]))
        kid = names.key_id(doc["key_id"])
        sig = base64.b64decode(doc["signature"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, InputError) as e:
        raise VerifyError(f"{origin}: malformed channel record: {e}") from e
    if trust is not None:
        if kid not in trust.keys:
            raise VerifyError(f"{origin}: channel record signed by unknown key {kid[:16]}…; add its public key with --trust")
        if not trust.verify(kid, sig, rec.payload()):
            raise VerifyError(f"{origin}: channel record signature does not match (altered in the bucket?)")
    return rec, kid
