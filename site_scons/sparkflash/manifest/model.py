"""The canonical manifest: what every transport deploys unchanged.

Canonical JSON is a pure function of the model (sorted keys, no whitespace, no
timestamps), so the same release gives the same bytes on every machine and the
signature covers exactly those bytes.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from typing import Any

from sparkflash.errors import InputError

__all__ = ["FORMAT", "MANIFEST_NAME", "SIGNATURE_NAME", "Region", "Manifest", "parse_version"]

_ID_CHARS = set(string.ascii_letters + string.digits + "-")

FORMAT = "sparkflash-manifest/1"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"  # detached, beside the manifest


def parse_version(v: str) -> tuple[int, int, int, tuple[tuple[int, int | str], ...]]:
    """Semver as a key ordered by semver precedence (2.0.0 §11): a pre-release sorts before
    its release, numeric identifiers compare as numbers, build metadata is ignored."""
    core, _, pre = v.split("+", 1)[0].partition("-")
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise InputError(f"version {v!r} is not semver (MAJOR.MINOR.PATCH)")
    ids = pre.split(".") if pre else []
    if any(not i or not set(i) <= _ID_CHARS for i in ids):
        raise InputError(f"version {v!r}: pre-release {pre!r} is not semver (dot-separated [0-9A-Za-z-] identifiers)")
    # (0, n) numeric < (1, s) alphanumeric; a release gets (2, "") so it sorts after any pre-release.
    key = tuple((0, int(i)) if i.isdigit() else (1, i) for i in ids) if ids else ((2, ""),)
    return int(parts[0]), int(parts[1]), int(parts[2]), key


@dataclass(frozen=True)
class Region:
    """One contiguous write: bytes with this digest go to `address` of `memory`."""

    name: str
    memory: str  # a board memory name: "internal" or "external" on the Core
    address: int
    size: int
    sha256: str
    crc32: int
    erase: tuple[int, ...]  # start addresses of the sectors this region erases
    kind: str = "data"  # "firmware" (the application image) or "data"
    allow_protected: bool = False

    @property
    def end(self) -> int:
        return self.address + self.size

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "memory": self.memory,
            "address": self.address,
            "size": self.size,
            "sha256": self.sha256,
            "crc32": self.crc32,
            "erase": list(self.erase),
            "kind": self.kind,
            "allow_protected": self.allow_protected,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Region:
        return cls(
            name=str(d["name"]),
            memory=str(d["memory"]),
            address=int(d["address"]),
            size=int(d["size"]),
            sha256=str(d["sha256"]),
            crc32=int(d["crc32"]),
            erase=tuple(int(x) for x in d["erase"]),
            kind=str(d.get("kind", "data")),
            allow_protected=bool(d.get("allow_protected", False)),
        )


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    board: str
    regions: tuple[Region, ...]
    meta: dict[str, str] = field(default_factory=dict)

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "board": self.board,
            "meta": dict(self.meta),
            "regions": [r.to_json() for r in self.regions],
        }

    def canonical(self) -> bytes:
        """The exact bytes that are signed, stored and published."""
        return (json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes, origin: str = "manifest") -> Manifest:
        try:
            d = json.loads(raw)
            if d.get("format") != FORMAT:
                raise InputError(f"{origin}: not a {FORMAT} manifest (format={d.get('format')!r})")
            m = cls(
                name=str(d["name"]),
                version=str(d["version"]),
                board=str(d["board"]),
                regions=tuple(Region.from_json(r) for r in d["regions"]),
                meta={str(k): str(v) for k, v in (d.get("meta") or {}).items()},
            )
        except InputError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{origin}: malformed manifest: {e}") from e
        if m.canonical() != raw:
            raise InputError(f"{origin}: manifest is not in canonical form (edited by hand?)")
        return m
