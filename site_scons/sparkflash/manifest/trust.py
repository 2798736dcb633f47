"""Who may sign what: a TUF root of trust (python-tuf's `Metadata[Root]`) or a legacy key directory.

The root names the keys and the threshold of each role; sparkflash uses three of TUF's four
top-level roles (python-tuf's `Root` allows no other names):

    root       signs the root itself (rotation: root N+1 needs a threshold of N's and of its own)
    targets    signs release manifests (manifest.json.sig)   -- "manifest" on the command line
    timestamp  signs channel records (channels/NAME/CH.json)  -- "channel" on the command line

`snapshot` is kept empty (no keys, nothing it signs is accepted). Key ids are sparkflash's (sha256
of the raw Ed25519 public key); a root whose key ids do not match its keys is refused, so one
key can never pose as another. `verify_signatures` is the one check every reader calls
(publish, deploy, dfu, the cloud server): at least `threshold` distinct keys of the role must
have signed. A legacy trust directory (.pub.pem files) is the degenerate case: any of its keys,
threshold 1, for both roles.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.signer import Key, Signature, SSlibKey
from securesystemslib.signer import Signer as SslibSigner
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization import DeserializationError

from sparkflash.errors import InputError, VerifyError
from sparkflash.manifest.keys import Signer, TrustStore, key_id

__all__ = ["ROLES", "ROLE_CHANNEL", "ROLE_MANIFEST", "ROLE_ROOT", "ROOT_CAP", "KeySig", "Trust", "TrustRoot",
           "TufSigner", "load_trust", "parse_root", "tuf_key", "verify_root_update", "verify_signatures",
           "walk_roots"]

ROLE_ROOT, ROLE_MANIFEST, ROLE_CHANNEL = "root", "targets", "timestamp"
ROLES = {"root": ROLE_ROOT, "manifest": ROLE_MANIFEST, "channel": ROLE_CHANNEL}  # CLI name -> TUF role
_SHOWN = {v: k for k, v in ROLES.items()}
ROOT_CAP = 256 * 1024  # a root names a handful of keys: anything larger is refused unread
MAX_KEYS = 64
MAX_ROOT_STEPS = 1024  # rotations walked in one update
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")

KeySig = tuple[str, bytes]  # (key id, raw Ed25519 signature)


def tuf_key(pub: Ed25519PublicKey) -> SSlibKey:
    """The TUF key for an Ed25519 public key, under sparkflash's key id."""
    return SSlibKey.from_crypto(pub, keyid=key_id(pub), scheme="ed25519")


class TufSigner(SslibSigner):
    """A sparkflash `Signer` (PEM file or pkcs11: token) as a securesystemslib signer, to sign root metadata."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self._key = tuf_key(signer.public_key)

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Key,
                          secrets_handler: Callable[[str], str] | None = None) -> SslibSigner:
        raise NotImplementedError("load keys with sparkflash.manifest.keys.load_signer")

    @property
    def public_key(self) -> Key:
        return self._key

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._key.keyid, self._signer.sign(payload).hex())


def _check_key(kid: str, key: Key, origin: str) -> None:
    if not _HEX64.fullmatch(kid):
        raise VerifyError(f"{origin}: key id {kid[:70]!r} is not 64 lowercase hex digits")
    pub = key.keyval.get("public") if isinstance(key.keyval, dict) else None
    if (key.keytype, key.scheme) != ("ed25519", "ed25519") or set(key.keyval) != {"public"} \
            or not isinstance(pub, str) or not _HEX64.fullmatch(pub):
        raise VerifyError(f"{origin}: key {kid[:16]}…: only Ed25519 keys (keytype and scheme ed25519, 32-byte "
                          "hex public value) are accepted")
    if hashlib.sha256(bytes.fromhex(pub)).hexdigest() != kid:
        raise VerifyError(f"{origin}: key {kid[:16]}…: the key id is not the sha256 of its public key")


def parse_root(raw: bytes, origin: str) -> Metadata[Root]:
    """A TUF root, structurally checked (keys, roles, signatures); its signatures are NOT verified here."""
    if len(raw) > ROOT_CAP:
        raise VerifyError(f"{origin}: root metadata is {len(raw)} bytes (at most {ROOT_CAP})")
    try:
        md = Metadata.from_bytes(raw)
    except DeserializationError as e:
        raise VerifyError(f"{origin}: not TUF root metadata: {e}") from None
    if not isinstance(md.signed, Root):
        raise VerifyError(f"{origin}: TUF metadata of type {md.signed.type!r}, not a root")
    root = md.signed
    if not 1 <= root.version < 1 << 31:
        raise VerifyError(f"{origin}: root version {root.version} out of range")
    if len(root.keys) > MAX_KEYS:
        raise VerifyError(f"{origin}: {len(root.keys)} keys (at most {MAX_KEYS})")
    for kid, key in root.keys.items():
        _check_key(kid, key, origin)
    for name, role in root.roles.items():
        missing = [k for k in role.keyids if k not in root.keys]
        if missing:
            raise VerifyError(f"{origin}: role {name} names key {missing[0][:16]}…, which the root does not list")
        if len(set(role.keyids)) != len(role.keyids):
            raise VerifyError(f"{origin}: role {name} lists a key twice")
    for kid, sig in md.signatures.items():
        if not _HEX64.fullmatch(kid) or not _HEX128.fullmatch(sig.signature):
            raise VerifyError(f"{origin}: malformed signature entry for key {kid[:16]!r}")
    return md


def _verified_root(md: Metadata[Root], previous: Root | None, origin: str) -> None:
    """A threshold of `previous`'s root keys (if any) and of `md`'s own root keys signed it."""
    try:
        res = md.signed.get_root_verification_result(previous, md.signed_bytes, md.signatures)
    except ValueError as e:  # versions not sequential
        raise VerifyError(f"{origin}: {e}") from None
    if previous is not None and not res.first.verified:
        raise VerifyError(f"{origin}: root v{md.signed.version} is signed by {len(res.first.signed)} of the "
                          f"{res.first.threshold} root keys of v{previous.version} it needs; a new root must be "
                          "signed by a threshold of the current root's root keys (sparkflash keys root sign)")
    if not res.second.verified:
        raise VerifyError(f"{origin}: root v{md.signed.version} is signed by {len(res.second.signed)} of the "
                          f"{res.second.threshold} of its own root keys it needs")


def verify_root_update(trusted: Metadata[Root], raw: bytes, origin: str) -> Metadata[Root]:
    """Root N+1 from outside: version exactly N+1 (else a rollback or a gap), signed by a threshold
    of root N's root keys AND of its own."""
    md = parse_root(raw, origin)
    want = trusted.signed.version + 1
    if md.signed.version != want:
        what = "rollback refused: " if md.signed.version <= trusted.signed.version else ""
        raise VerifyError(f"{origin}: {what}holds root v{md.signed.version}, expected v{want} (this host trusts "
                          f"v{trusted.signed.version})")
    _verified_root(md, trusted.signed, origin)
    return md


def walk_roots(trusted: Metadata[Root], get: Callable[[int], tuple[bytes, str] | None]) -> Metadata[Root]:
    """From a trusted root up through every next version `get(version)` returns (bytes, origin); the newest."""
    for _ in range(MAX_ROOT_STEPS):
        got = get(trusted.signed.version + 1)
        if got is None:
            return trusted
        trusted = verify_root_update(trusted, *got)
    raise VerifyError(f"more than {MAX_ROOT_STEPS} root versions in one update")


@dataclass
class TrustRoot:
    """A verified TUF root; `origin` says where it came from (for messages)."""

    md: Metadata[Root]
    origin: str

    @property
    def version(self) -> int:
        return self.md.signed.version

    @classmethod
    def from_bytes(cls, raw: bytes, origin: str) -> TrustRoot:
        """A root trusted as given (pinned by the owner, or this host's own cache): self-signed to threshold."""
        md = parse_root(raw, origin)
        _verified_root(md, None, origin)
        return cls(md, origin)

    @classmethod
    def from_file(cls, path: Path) -> TrustRoot:
        from sparkflash.manifest.sources import read_regular

        return cls.from_bytes(read_regular(path, ROOT_CAP), str(path))

    def check_fresh(self, now: datetime | None = None) -> None:
        if self.md.signed.is_expired(now or datetime.now(UTC)):
            raise VerifyError(f"{self.origin}: root v{self.version} expired at {self.md.signed.expires:%Y-%m-%dT%H:%M:%SZ}; "
                              "a frozen root of trust? The owner must sign a new root version")

    def role_keys(self, role: str) -> tuple[list[str], int]:
        r = self.md.signed.roles[role]
        return list(r.keyids), r.threshold


Trust = TrustStore | TrustRoot


def load_trust(paths: Sequence[Path]) -> Trust:
    """--trust: one TUF root (a file ending .root.json), or .pub.pem files / directories (legacy)."""
    roots = [p for p in paths if p.name.endswith(".root.json")]
    if roots:
        if len(paths) != 1:
            raise InputError(f"--trust {roots[0]}: a root of trust names every key itself; give it alone "
                             "(not with other --trust keys or roots)")
        return TrustRoot.from_file(roots[0])
    return TrustStore.from_paths(list(paths))


def verify_signatures(trust: Trust, role: str, payload: bytes, sigs: Sequence[KeySig], origin: str,
                      what: str) -> list[str]:
    """The key ids that validly signed `payload` for `role`; VerifyError unless a threshold did.

    A TUF root: only keys the root lists for `role` count, each once, and the root must not be
    expired. A legacy key directory: any one of its keys."""
    if isinstance(trust, TrustStore):
        known = [(k, s) for k, s in sigs if k in trust.keys]
        if not known:
            raise VerifyError(f"{origin}: {what} signed by unknown key {sigs[0][0][:16] if sigs else '?'}…; "
                              "add its public key with --trust")
        good = [k for k, s in known if trust.verify(k, s, payload)]
        if not good:
            raise VerifyError(f"{origin}: {what} signature does not match (altered or tampered?)")
        return good
    trust.check_fresh()
    signatures = {k: Signature(k, s.hex()) for k, s in dict(sigs).items()}
    res = trust.md.signed.get_verification_result(role, payload, signatures)
    if not res.verified:
        keyids, threshold = trust.role_keys(role)
        foreign = [k for k in signatures if k not in keyids]
        hint = (f"; key {foreign[0][:16]}… is not a {_SHOWN[role]} key of this root (another role's, or revoked)"
                if foreign else "")
        raise VerifyError(f"{origin}: {what} has {len(res.signed)} valid signature(s) of the {threshold} the "
                          f"{_SHOWN[role]} role needs (root v{trust.version}, {len(keyids)} keys){hint}")
    return sorted(res.signed)


def root_summary(md: Metadata[Root]) -> dict[str, Any]:
    """What `keys root show --json` prints."""
    r = md.signed
    return {"version": r.version, "expires": f"{r.expires:%Y-%m-%dT%H:%M:%SZ}",
            "roles": {_SHOWN.get(n, n): {"tuf_role": n, "threshold": role.threshold, "keys": list(role.keyids)}
                      for n, role in sorted(r.roles.items()) if n in _SHOWN},
            "signatures": sorted(md.signatures)}
