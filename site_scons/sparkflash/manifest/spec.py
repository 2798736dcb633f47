"""The release YAML schema: marked YAML in, typed specs out (no board, no files yet).

Every key is known or refused, every value has its type checked, and each error names
`file:line:` plus the region, so that hypothesis-generated junk and honest typos both
end in one clear InputError, never a traceback.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkflash import names
from sparkflash.errors import InputError
from sparkflash.manifest.load import INT_RE, MAX_INT_DIGITS, Marked, MarkedList, load_yaml, where
from sparkflash.manifest.model import parse_version

__all__ = ["SourceSpec", "RegionSpec", "ReleaseSpec", "parse_release", "load_release", "NAME_RE", "KINDS"]

NAME_RE = names.RULES["release name"][0]  # use with fullmatch (names.valid)
KINDS = ("data", "firmware")
SHARED_SECTOR_POLICIES = ("warn", "error")
TOP_KEYS = ("name", "version", "board", "description", "meta", "shared_sectors", "regions")
REGION_KEYS = ("name", "kind", "memory", "address", "area", "source", "fill", "pad_to", "align", "allow_protected")
SOURCE_KINDS = ("build", "file", "dir", "generate")
GENERATOR_KEYS = ("first", "count")
MAX_INT = 1 << 32


@dataclass(frozen=True)
class SourceSpec:
    """Where a region's bytes come from: a build output, a file, a packed dir or a generator."""

    kind: str  # one of SOURCE_KINDS
    value: str
    params: tuple[tuple[str, int], ...] = ()
    line: int = 0


@dataclass(frozen=True)
class RegionSpec:
    name: str
    line: int
    kind: str
    memory: str | None
    address: int | None
    area: str | None
    source: SourceSpec
    fill: int | None
    pad_to: int | None
    align: int | None
    allow_protected: bool
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


@dataclass(frozen=True)
class ReleaseSpec:
    origin: str  # the YAML path as given (used in every error)
    name: str
    version: str
    board: str
    meta: dict[str, str]
    shared_sectors: str
    regions: tuple[RegionSpec, ...]
    line: int = 1
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


class _Repr(reprlib.Repr):
    repr_Marked = reprlib.Repr.repr_dict  # reprlib dispatches on the type's name
    repr_MarkedList = reprlib.Repr.repr_list


_REPR = _Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 4, 4


def _show(v: Any) -> str:
    """A bounded repr: YAML aliases can make a small file a huge value (billion laughs)."""
    return _REPR.repr(v)


class _Ctx:
    """Error helper: knows the file and (optionally) the region being read."""

    def __init__(self, origin: str, region: str | None = None) -> None:
        self.origin, self.region = origin, region

    def err(self, line: int, msg: str) -> InputError:
        who = f"region {self.region!r}: " if self.region else ""
        return InputError(f"{where(self.origin, line)}: {who}{msg}")


def _keys(ctx: _Ctx, d: Marked, known: tuple[str, ...], what: str) -> None:
    for k in d:
        if k not in known:
            raise ctx.err(d.line_of(k), f"unknown key {_show(k)} in {what} (known: {', '.join(known)})")


def _str(ctx: _Ctx, d: Marked, key: str, required: bool = True) -> str | None:
    if key not in d:
        if required:
            raise ctx.err(d.line, f"missing required key {key!r}")
        return None
    v = d[key]
    if not isinstance(v, str) or not v:
        hint = f' (quote it: {key}: "{v}")' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
        raise ctx.err(d.line_of(key), f"{key} must be a non-empty string, not {_show(v)}{hint}")
    return v


def _int(ctx: _Ctx, d: Marked, key: str, lo: int = 0, hi: int = MAX_INT) -> int | None:
    if key not in d:
        return None
    v = d[key]
    if isinstance(v, str) and len(v) <= MAX_INT_DIGITS and INT_RE.fullmatch(v):  # a quoted "0x80000"
        v = int(v, 16) if v.startswith("0x") else int(v, 10)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.err(d.line_of(key), f"{key} must be an integer such as 0x80000, not {_show(d[key])}")
    if not lo <= v < hi:
        raise ctx.err(d.line_of(key), f"{key} {v:#x} out of range [{lo:#x}, {hi:#x})")
    return v


def _name(ctx: _Ctx, d: Marked, key: str = "name", kind: str = "release name") -> str:
    v = _str(ctx, d, key)
    assert v is not None
    if not names.valid(kind, v):
        raise ctx.err(d.line_of(key), f"{key} {_show(v)} must be {names.RULES[kind][1]}")
    return v


def _source(ctx: _Ctx, parent: Marked) -> SourceSpec:
    line = parent.line_of("source")
    d = parent.get("source")
    if not isinstance(d, Marked):
        raise ctx.err(line, "source must be a mapping such as {file: font.bin}, {dir: web/}, {build: firmware} "
                            "or {generate: hexfont, count: 2047}")
    kinds = [k for k in d if k in SOURCE_KINDS]
    if len(kinds) != 1:
        raise ctx.err(d.line, f"source needs exactly one of {', '.join(SOURCE_KINDS)} (got {', '.join(map(str, d)) or 'none'})")
    kind = kinds[0]
    _keys(ctx, d, (kind, *GENERATOR_KEYS) if kind == "generate" else (kind,), f"source ({kind})")
    value = _str(ctx, d, kind)
    assert value is not None
    params = tuple((k, v) for k in GENERATOR_KEYS if (v := _int(ctx, d, k)) is not None)
    return SourceSpec(kind, value, params, d.line_of(kind))


def _region(origin: str, d: Any, line: int, index: int) -> RegionSpec:
    ctx = _Ctx(origin, f"#{index + 1}")
    if not isinstance(d, Marked):
        raise ctx.err(line, f"each region must be a mapping with name, memory/address or area, and source; got {_show(d)}")
    ctx.region = _name(ctx, d, kind="region name")
    _keys(ctx, d, REGION_KEYS, "region")
    kind = _str(ctx, d, "kind", required=False) or "data"
    if kind not in KINDS:
        raise ctx.err(d.line_of("kind"), f"kind {kind!r} unknown (known: {', '.join(KINDS)})")
    if "address" in d and "area" in d:
        raise ctx.err(d.line_of("area"), "give either address or area, not both")
    if "address" not in d and "area" not in d and kind != "firmware":
        raise ctx.err(d.line, "missing address (or a named area such as area: user)")
    allow = d.get("allow_protected", False)
    if not isinstance(allow, bool):
        raise ctx.err(d.line_of("allow_protected"), f"allow_protected must be true or false, not {_show(allow)}")
    if "source" not in d:
        raise ctx.err(d.line, "missing required key 'source'")
    align = _int(ctx, d, "align", 1)
    if align is not None and align & (align - 1):
        raise ctx.err(d.line_of("align"), f"align {align:#x} must be a power of two")
    return RegionSpec(
        name=ctx.region,
        line=d.line,
        kind=kind,
        memory=_str(ctx, d, "memory", required=False),
        address=_int(ctx, d, "address"),
        area=_str(ctx, d, "area", required=False),
        source=_source(ctx, d),
        fill=_int(ctx, d, "fill", 0, 256),
        pad_to=_int(ctx, d, "pad_to", 1),
        align=align,
        allow_protected=allow,
        lines={str(k): d.line_of(k) for k in d},
    )


def parse_release(doc: Any, origin: str) -> ReleaseSpec:
    """Check the shape of a loaded release YAML document."""
    ctx = _Ctx(origin)
    if not isinstance(doc, Marked):
        raise ctx.err(getattr(doc, "line", 1), "a release file must be a mapping with name, version, board and regions")
    _keys(ctx, doc, TOP_KEYS, "the release")
    name = _name(ctx, doc)
    version = _str(ctx, doc, "version")
    assert version is not None
    try:
        parse_version(version)
    except InputError as e:
        raise ctx.err(doc.line_of("version"), str(e)) from None
    board = _name(ctx, doc, "board", kind="board name")
    meta_raw = doc.get("meta", Marked())
    if not isinstance(meta_raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta_raw.items()):
        raise ctx.err(doc.line_of("meta"), "meta must map strings to strings")
    meta = dict(meta_raw)
    if (desc := _str(ctx, doc, "description", required=False)) is not None:
        meta.setdefault("description", desc)
    policy = _str(ctx, doc, "shared_sectors", required=False) or "warn"
    if policy not in SHARED_SECTOR_POLICIES:
        raise ctx.err(doc.line_of("shared_sectors"), f"shared_sectors must be one of {', '.join(SHARED_SECTOR_POLICIES)}")
    regs = doc.get("regions")
    if not isinstance(regs, MarkedList) or not regs:
        raise ctx.err(doc.line_of("regions"), "regions must be a non-empty list")
    regions = tuple(_region(origin, r, regs.line_of(i), i) for i, r in enumerate(regs))
    seen: dict[str, int] = {}
    for r in regions:
        if r.name in seen:
            raise InputError(f"{where(origin, r.line)}: region {r.name!r}: duplicate region name (first on line {seen[r.name]})")
        seen[r.name] = r.line
    return ReleaseSpec(origin, name, version, board, meta, policy, regions, doc.line, {str(k): doc.line_of(k) for k in doc})


def load_release(path: Path) -> ReleaseSpec:
    """Parse and check a release YAML file (no board, no sources read yet)."""
    return parse_release(load_yaml(path), str(path))
