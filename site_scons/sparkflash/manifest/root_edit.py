"""The owner's side of the root of trust: a directory of root versions, `1.root.json`, `2.root.json`, ...

The same names as the bucket's `roots/`. An edit (add or remove a key, change a threshold or the
expiry) of a version that is complete -- signed by a threshold of its predecessor's root keys and
of its own -- starts the next version; an edit of an incomplete one changes it in place and drops
its signatures (they no longer cover it). Signing adds to the newest version's signatures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tuf.api.metadata import Metadata, Role, Root

from sparkflash.errors import InputError
from sparkflash.manifest.keys import Signer, key_id
from sparkflash.manifest.release import atomic_write
from sparkflash.manifest.sources import read_regular
from sparkflash.manifest.trust import (
    ROLE_ROOT,
    ROLES,
    ROOT_CAP,
    TufSigner,
    parse_root,
    tuf_key,
)

__all__ = ["RootDir", "RootStatus", "key_from_arg", "key_id_from_arg", "new_root"]

_VERSION_FILE = re.compile(r"([1-9][0-9]{0,9})\.root\.json")
DEFAULT_DAYS = 365.0


def _expiry(days: float) -> datetime:
    if not 0 < days <= 3660:
        raise InputError(f"--expires-days {days}: must be more than 0 and at most 3660")
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def _role(name: str) -> str:
    if name not in ROLES:
        raise InputError(f"--role {name!r}: expected one of {', '.join(ROLES)}")
    return ROLES[name]


def _check_thresholds(root: Root) -> None:
    for cli, tuf in ROLES.items():
        r = root.roles[tuf]
        if not 1 <= r.threshold <= len(r.keyids):
            raise InputError(f"the {cli} role would need {r.threshold} signatures of {len(r.keyids)} keys; "
                             f"give it at least one key and a threshold from 1 to its number of keys")


def new_root(keys: dict[str, list[Ed25519PublicKey]], thresholds: dict[str, int], days: float) -> Metadata[Root]:
    """Version 1, unsigned: keys and threshold per role (CLI names root, manifest, channel)."""
    root = Root(version=1, expires=_expiry(days), consistent_snapshot=False)
    root.roles["snapshot"] = Role([], 1)  # unused by sparkflash: holds no key, so nothing it signs counts
    for cli, pubs in keys.items():
        for pub in pubs:
            root.add_key(tuf_key(pub), _role(cli))
        root.roles[_role(cli)].threshold = thresholds.get(cli, 1)
    _check_thresholds(root)
    return Metadata(root)


@dataclass
class RootStatus:
    version: int
    own: tuple[int, int]  # (valid signatures of its own root keys, threshold)
    previous: tuple[int, int] | None  # the same against the previous version's root keys

    @property
    def complete(self) -> bool:
        return self.own[0] >= self.own[1] and (self.previous is None or self.previous[0] >= self.previous[1])


class RootDir:
    """N.root.json files in one directory; the newest is the one edited and signed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def versions(self) -> list[int]:
        if not self.path.is_dir():
            raise InputError(f"{self.path}: not a directory of root versions (create one with `sparkflash keys root init`)")
        got = sorted(int(m[1]) for p in self.path.iterdir() if (m := _VERSION_FILE.fullmatch(p.name)))
        if not got:
            raise InputError(f"{self.path}: holds no N.root.json (create one with `sparkflash keys root init`)")
        if got != list(range(got[0], got[0] + len(got))):
            raise InputError(f"{self.path}: root versions {got} have a gap; every version is needed for the chain")
        return got

    def file(self, version: int) -> Path:
        return self.path / f"{version}.root.json"

    def load(self, version: int) -> Metadata[Root]:
        md = parse_root(read_regular(self.file(version), ROOT_CAP), str(self.file(version)))
        if md.signed.version != version:
            raise InputError(f"{self.file(version)}: holds root v{md.signed.version}, not v{version}")
        return md

    def newest(self) -> Metadata[Root]:
        return self.load(self.versions()[-1])

    def save(self, md: Metadata[Root]) -> Path:
        out = self.file(md.signed.version)
        atomic_write(out, md.to_bytes())
        return out

    def create(self, md: Metadata[Root]) -> Path:
        if self.path.exists() and any(_VERSION_FILE.fullmatch(p.name) for p in self.path.iterdir()):
            raise InputError(f"{self.path}: already holds root versions; refusing to start another chain here")
        self.path.mkdir(parents=True, exist_ok=True)
        return self.save(md)

    def status(self, md: Metadata[Root]) -> RootStatus:
        prev = self.load(md.signed.version - 1) if md.signed.version - 1 in self.versions() else None
        if prev is None and md.signed.version != self.versions()[0]:
            raise InputError(f"{self.path}: root v{md.signed.version - 1} is missing")
        payload, sigs = md.signed_bytes, md.signatures
        own = md.signed.get_verification_result(ROLE_ROOT, payload, sigs)
        previous = None
        if prev is not None:
            p = prev.signed.get_verification_result(ROLE_ROOT, payload, sigs)
            previous = (len(p.signed), p.threshold)
        return RootStatus(md.signed.version, (len(own.signed), own.threshold), previous)

    def editable(self, days: float | None) -> Metadata[Root]:
        """The version an edit changes: the next one after a complete newest, else the newest itself."""
        md = self.newest()
        if self.status(md).complete:
            md = Metadata(Root.from_dict(md.signed.to_dict()))  # a copy
            md.signed.version += 1
            md.signed.expires = _expiry(days if days is not None else DEFAULT_DAYS)
        else:
            md.signatures.clear()
            if days is not None:
                md.signed.expires = _expiry(days)
        return md

    def finish_edit(self, md: Metadata[Root]) -> Path:
        _check_thresholds(md.signed)
        return self.save(md)

    def add_key(self, role: str, pub: Ed25519PublicKey, threshold: int | None, days: float | None) -> Path:
        md = self.editable(days)
        md.signed.add_key(tuf_key(pub), _role(role))
        if threshold is not None:
            md.signed.roles[_role(role)].threshold = threshold
        return self.finish_edit(md)

    def remove_key(self, role: str, kid: str, threshold: int | None, days: float | None) -> Path:
        md = self.editable(days)
        if kid not in md.signed.roles[_role(role)].keyids:
            raise InputError(f"key {kid[:16]}… is not a {role} key of root v{md.signed.version}")
        md.signed.revoke_key(kid, _role(role))
        r = md.signed.roles[_role(role)]
        if threshold is not None:
            r.threshold = threshold
        elif r.threshold > len(r.keyids):
            raise InputError(f"removing key {kid[:16]}… leaves the {role} role {len(r.keyids)} keys for a threshold of "
                             f"{r.threshold}; pass --threshold")
        return self.finish_edit(md)

    def renew(self, days: float | None) -> Path:
        return self.finish_edit(self.editable(days if days is not None else DEFAULT_DAYS))

    def sign(self, signers: list[Signer]) -> tuple[Path, RootStatus]:
        """Add signatures to the newest version; each key must be a root key of it or of its predecessor."""
        md = self.newest()
        v = md.signed.version
        allowed = set(md.signed.roles[ROLE_ROOT].keyids)
        if v - 1 in self.versions():
            allowed |= set(self.load(v - 1).signed.roles[ROLE_ROOT].keyids)
        for s in signers:
            if s.key_id not in allowed:
                raise InputError(f"key {s.key_id[:16]}… is not a root key of v{v} or v{v - 1}; its signature "
                                 "would not count")
            md.sign(TufSigner(s), append=True)
        out = self.save(md)
        return out, self.status(md)


def key_from_arg(spec: str) -> Ed25519PublicKey:
    """A public key named on the command line: a .pub.pem path, a PEM private key, or a pkcs11: URI."""
    from sparkflash.manifest.keys import load_public_key, load_signer

    if spec.startswith("pkcs11:") or not spec.endswith(".pub.pem"):
        return load_signer(spec).public_key
    return load_public_key(Path(spec))


def key_id_from_arg(spec: str) -> str:
    """A key id (64 hex) as given, or the id of the key `spec` names."""
    if re.fullmatch(r"[0-9a-f]{64}", spec):
        return spec
    return key_id(key_from_arg(spec))

