"""Signed channel records: `channels/<name>/<channel>.json` says which version is "stable".

Record and signature travel in ONE object so that moving a channel is a single atomic
PUT: a reader never sees a new record with an old signature. The record pins the exact
manifest bytes (sha256), so a channel cannot be pointed at content that was never signed,
even if `releases/<name>/<version>/` were somehow replaced.

Rollback and freeze: every record carries a `sequence` (each move of a channel adds one)
and an `expires` time. A reader refuses an expired record (a frozen channel, replayed
forever, stops working at its expiry) and one whose sequence is lower than the last it
saw for that channel (a replayed old record); see `ChannelMemory`.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sparkflash import names
from sparkflash.errors import InputError, VerifyError
from sparkflash.manifest.keys import Signer
from sparkflash.manifest.trust import ROLE_CHANNEL, Trust, verify_signatures

__all__ = ["CHANNEL_FORMAT", "ChannelMemory", "ChannelRecord", "format_time", "open_channel", "parse_time",
           "sign_channel"]

CHANNEL_FORMAT = "sparkflash-channel/2"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MAX_SIGNATURES = 32


def _canonical(d: dict[str, Any]) -> bytes:
    return (json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode()


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(s: object) -> datetime:
    """RFC 3339 UTC, whole seconds, `Z` (the only form written)."""
    if not isinstance(s, str) or len(s) != 20:
        raise ValueError(f"time {str(s)[:40]!r} is not YYYY-MM-DDTHH:MM:SSZ")
    return datetime.strptime(s, _TIME_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class ChannelRecord:
    name: str
    channel: str
    version: str
    manifest_sha256: str
    sequence: int = 1
    expires: str = "1970-01-01T00:00:00Z"

    def to_json(self) -> dict[str, Any]:
        return {"format": CHANNEL_FORMAT, "name": self.name, "channel": self.channel,
                "version": self.version, "manifest_sha256": self.manifest_sha256,
                "sequence": self.sequence, "expires": self.expires}

    def payload(self) -> bytes:
        """The bytes the signature covers."""
        return _canonical(self.to_json())


def sign_channel(record: ChannelRecord, signer: Signer | list[Signer]) -> bytes:
    """The object stored at channels/<name>/<channel>.json. One signer keeps the original form
    (alg, key_id, signature); several (k-of-n) write "signatures": [{key_id, signature}, ...]."""
    signers = signer if isinstance(signer, list) else [signer]
    sigs = sorted({s.key_id: s.sign(record.payload()) for s in signers}.items())
    if not sigs:
        raise InputError("a channel record needs at least one signing key")
    doc: dict[str, Any] = {"record": record.to_json(), "alg": "ed25519"}
    if len(sigs) == 1:
        doc |= {"key_id": sigs[0][0], "signature": base64.b64encode(sigs[0][1]).decode()}
    else:
        doc["signatures"] = [{"key_id": k, "signature": base64.b64encode(v).decode()} for k, v in sigs]
    return _canonical(doc)


def open_channel(raw: bytes, origin: str, trust: Trust | None, *,
                 now: datetime | None = None) -> tuple[ChannelRecord, str]:
    """Parse (and, given a trust store or root, verify) a channel object; returns (record, first key_id).

    With trust=None the signature is not checked here: the manifest it points to is
    still pinned by digest and its own signature is checked by `open_release`. With a root,
    a threshold of its channel role's keys must have signed (a manifest key does not count).
    With `now`, an expired record is refused.
    """
    try:
        doc = json.loads(raw)
        r = doc["record"]
        if r.get("format") != CHANNEL_FORMAT or doc.get("alg") != "ed25519":
            raise ValueError(f"not a {CHANNEL_FORMAT} ed25519 record (format {str(r.get('format'))[:40]!r}; "
                             "records without a sequence and expiry are refused: move the channel again)")
        seq = r["sequence"]
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq < 1 << 63:
            raise ValueError(f"sequence {str(seq)[:40]!r} is not a positive integer")
        parse_time(r["expires"])
        rec = ChannelRecord(names.release_name(r["name"]), names.channel(r["channel"]), names.version(r["version"]),
                            names.digest(r["manifest_sha256"]), seq, str(r["expires"]))
        entries = doc["signatures"] if "signatures" in doc else [doc]
        if not isinstance(entries, list) or not 1 <= len(entries) <= _MAX_SIGNATURES:
            raise ValueError(f"'signatures' must list 1 to {_MAX_SIGNATURES} signatures")
        sigs = [(names.key_id(e["key_id"]), base64.b64decode(e["signature"], validate=True)) for e in entries]
    except (ValueError, KeyError, TypeError, AttributeError, InputError) as e:
        raise VerifyError(f"{origin}: malformed channel record: {e}") from e
    if trust is not None:
        verify_signatures(trust, ROLE_CHANNEL, rec.payload(), sigs, origin, "channel record")
    if now is not None and parse_time(rec.expires) <= now:
        raise VerifyError(f"{origin}: channel record (sequence {rec.sequence}, {rec.name} {rec.version}) expired at "
                          f"{rec.expires}; a frozen or replayed channel? Move the channel again to renew it")
    return rec, sigs[0][0]


def state_root() -> Path:
    """Where host-side security state lives: $SPARKFLASH_HOME, else $XDG_STATE_HOME/sparkflash."""
    home = os.environ.get("SPARKFLASH_HOME")
    if home:
        return Path(home)
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "sparkflash"


class ChannelMemory:
    """The last channel record this host accepted, per bucket/prefix/name/channel (validated
    names only). A record with a lower sequence, or the same sequence with other content, is a
    rollback or a fork and is refused."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or state_root()) / "channels"

    def _path(self, bucket: str, prefix: str, rec: ChannelRecord) -> Path:
        p = self.root / names.bucket(bucket)
        for part in names.prefix(prefix).split("/") if prefix else []:
            p = p / part
        return p / names.release_name(rec.name) / f"{names.channel(rec.channel)}.json"

    def check_and_remember(self, bucket: str, prefix: str, rec: ChannelRecord, origin: str) -> None:
        from sparkflash.manifest.release import atomic_write

        p = self._path(bucket, prefix, rec)
        try:
            last = json.loads(p.read_bytes())
            seq, sha = int(last["sequence"]), str(last["manifest_sha256"])
        except FileNotFoundError:
            seq, sha = 0, ""
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{p}: unreadable channel state ({e}); fix or delete it") from None
        if rec.sequence < seq:
            raise VerifyError(f"{origin}: rollback refused: channel record sequence {rec.sequence} ({rec.version}) is "
                              f"older than sequence {seq} this host already accepted ({p})")
        if rec.sequence == seq and rec.manifest_sha256 != sha:
            raise VerifyError(f"{origin}: channel record sequence {rec.sequence} names another manifest than the "
                              f"record of the same sequence this host accepted ({p}); two signers forked the channel?")
        if rec.sequence > seq:
            atomic_write(p, (json.dumps(rec.to_json(), sort_keys=True, indent=2) + "\n").encode())
