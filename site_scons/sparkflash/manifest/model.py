"""The canonical manifest: what every transport deploys unchanged.

Canonical JSON is a pure function of the model (sorted keys, no whitespace, no
timestamps), so the same release gives the same bytes on every machine and the
signature covers exactly those bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sparkflash import names
from sparkflash.errors import InputError

__all__ = ["FORMAT", "MANIFEST_NAME", "SIGNATURE_NAME", "Region", "Manifest", "parse_version"]

MAX_U32 = 1 << 32

FORMAT = "sparkflash-manifest/1"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"  # detached, beside the manifest


def parse_version(v: str) -> tuple[int, int, int, tuple[tuple[int, int | str], ...]]:
    """Semver as a key ordered by semver precedence (2.0.0 §11): a pre-release sorts before
    its release, numeric identifiers compare as numbers, build metadata is ignored.
    Strict semver (no leading zeros, no '/' or other characters in build metadata), since a
    version becomes an S3 key segment and a cache directory name."""
    names.version(v)
    core, _, pre = v.split("+", 1)[0].partition("-")
    parts = core.split(".")
    ids = pre.split(".") if pre else []
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
        """Every field type- and rule-checked: a signed manifest is still input from outside."""
        name = names.region_name(d["name"], "region")
        where = f"region {name!r}"
        kind = d.get("kind", "data")
        if kind not in ("data", "firmware"):
            raise InputError(f"{where}: kind {kind!r} is neither data nor firmware")
        allow = d.get("allow_protected", False)
        if not isinstance(allow, bool):
            raise InputError(f"{where}: allow_protected must be true or false")
        erase = d["erase"]
        if not isinstance(erase, list):
            raise InputError(f"{where}: erase must be a list of addresses")
        return cls(
            name=name,
            memory=names.check("memory name", d["memory"], where),
            address=_u32(d["address"], f"{where}: address"),
            size=_u32(d["size"], f"{where}: size"),
            sha256=names.digest(d["sha256"], f"{where}: sha256"),
            crc32=_u32(d["crc32"], f"{where}: crc32"),
            erase=tuple(_u32(x, f"{where}: erase") for x in erase),
            kind=kind,
            allow_protected=allow,
        )


def _u32(v: object, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < MAX_U32:
        raise InputError(f"{where}: {str(v)[:40]!r} is not an integer in 0..0xffffffff")
    return v


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
            meta = d.get("meta") or {}
            if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
                raise InputError(f"{origin}: meta must map strings to strings")
            if not isinstance(d["regions"], list) or not d["regions"]:
                raise InputError(f"{origin}: regions must be a non-empty list")
            m = cls(
                name=names.release_name(d["name"], origin),
                version=names.version(d["version"], origin),
                board=names.board_name(d["board"], origin),
                regions=tuple(Region.from_json(r) for r in d["regions"]),
                meta=dict(meta),
            )
            if len({r.name for r in m.regions}) != len(m.regions):
                raise InputError(f"{origin}: duplicate region names")
        except InputError as e:
            raise InputError(str(e) if str(e).startswith(origin) else f"{origin}: {e}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{origin}: malformed manifest: {e}") from e
        if m.canonical() != raw:
            raise InputError(f"{origin}: manifest is not in canonical form (edited by hand?)")
        return m
