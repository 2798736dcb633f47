"""Release YAML → canonical manifest.json + content-addressed blobs in an output directory.

The only module here that reads source files and writes outputs; validation itself is
pure (spec.py, layout.py). Output for a given YAML, sources and options is
byte-identical on every run and machine: nothing depends on time, paths or order of
directory listing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sparkflash import names
from sparkflash.boards import Board, load_board
from sparkflash.errors import InputError
from sparkflash.manifest.generate import generate
from sparkflash.manifest.layout import LayoutResult, lay_out
from sparkflash.manifest.load import where
from sparkflash.manifest.model import Manifest
from sparkflash.manifest.pack import pack_dir
from sparkflash.manifest.release import MANIFEST_NAME, SIGNATURE_NAME, atomic_write, blob_key, store_blob
from sparkflash.manifest.sources import confine, read_regular
from sparkflash.manifest.spec import RegionSpec, ReleaseSpec, load_release

__all__ = ["BuildResult", "Plan", "load_release", "resolve_sources", "plan_release", "write_release", "build_release"]

@dataclass(frozen=True)
class Plan:
    """Everything `build` would write, computed without writing anything."""

    spec: ReleaseSpec
    board: Board
    manifest: Manifest
    layout: LayoutResult

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.layout.warnings


@dataclass(frozen=True)
class BuildResult:
    manifest: Manifest
    board: Board
    manifest_path: Path
    warnings: tuple[str, ...]
    changed: bool  # False when manifest.json already had these exact bytes


def _read_source(spec: RegionSpec, base: Path, artifacts: Mapping[str, Path], origin: str,
                 allowed: tuple[Path, ...], limit: int) -> bytes:
    src = spec.source
    here = f"{where(origin, src.line)}: region {spec.name!r}"
    if src.kind == "generate":
        try:
            return generate(src.value, dict(src.params))
        except InputError as e:
            raise InputError(f"{here}: {e}") from None
    p: Path = base
    if src.kind == "build":
        given = artifacts.get(src.value)
        if given is None:
            hint = "--firmware PATH" if src.value == "firmware" else f"--artifact {src.value}=PATH"
            raise InputError(f"{here}: build output {src.value!r} not given; pass {hint} (scons manifest does)")
        p = given
    try:
        if src.kind != "build":  # file: and dir: come from the YAML: confined to the project
            p = confine(base, src.value, allowed, src.kind)
        if src.kind == "dir":
            return pack_dir(p, limit)
        return read_regular(p, limit)
    except InputError as e:
        raise InputError(f"{here}: {e}") from None
    except OSError as e:
        raise InputError(f"{here}: cannot read {src.kind} source {p}: {e.strerror or e}") from None
    except ValueError as e:  # e.g. a NUL byte in the path
        raise InputError(f"{here}: bad {src.kind} source path {src.value!r}: {e}") from None


def resolve_sources(rel: ReleaseSpec, base: Path, artifacts: Mapping[str, Path], *,
                    allowed: tuple[Path, ...] = (), limit: int = 1 << 32) -> dict[str, bytes]:
    """Each region's raw bytes; file and dir paths are relative to the YAML's directory and must
    stay inside it or an `allowed` directory; no source may exceed `limit` bytes."""
    return {r.name: _read_source(r, base, artifacts, rel.origin, allowed, limit) for r in rel.regions}


def plan_release(
    path: Path,
    *,
    artifacts: Mapping[str, Path] | None = None,
    strict_sectors: bool = False,
    meta: Mapping[str, str] | None = None,
    allow_dirs: tuple[Path, ...] = (),
) -> Plan:
    """Load, resolve and lay out a release YAML; raises InputError at the first problem."""
    rel = load_release(path)
    try:
        board = load_board(rel.board, search=(path.parent / "boards",))
    except InputError as e:
        raise InputError(f"{where(rel.origin, rel.line_of('board'))}: {e}") from None
    limit = max(m.size for m in board.memories)  # a larger source cannot fit anywhere: never read it
    sources = resolve_sources(rel, path.parent, artifacts or {}, allowed=allow_dirs, limit=limit)
    layout = lay_out(rel, board, sources, strict_sectors=strict_sectors)
    manifest = Manifest(rel.name, rel.version, board.name, layout.regions, {**rel.meta, **(meta or {})})
    return Plan(rel, board, manifest, layout)


def write_release(out_dir: Path, manifest: Manifest, blobs: Mapping[str, bytes]) -> tuple[Path, bool]:
    """Write manifest.json and its blobs; drop blobs and a signature that no longer apply."""
    raw = manifest.canonical()
    for data in blobs.values():
        store_blob(out_dir, data)
    mpath = out_dir / MANIFEST_NAME
    changed = not mpath.exists() or mpath.read_bytes() != raw
    if changed:
        (out_dir / SIGNATURE_NAME).unlink(missing_ok=True)  # it signs other bytes now
        atomic_write(mpath, raw)
    wanted = {r.sha256 for r in manifest.regions}
    store = out_dir / blob_key("0" * 64).rsplit("/", 1)[0]
    for p in store.iterdir() if store.is_dir() else ():
        if names.valid("digest", p.name) and p.name not in wanted:
            p.unlink()
    return mpath, changed


def build_release(
    path: Path,
    out_dir: Path,
    *,
    artifacts: Mapping[str, Path] | None = None,
    firmware: Path | None = None,
    strict_sectors: bool = False,
    meta: Mapping[str, str] | None = None,
    allow_dirs: tuple[Path, ...] = (),
) -> BuildResult:
    """The whole of `sparkflash manifest build` / `scons manifest`, minus printing."""
    arts = dict(artifacts or {})
    if firmware is not None:
        arts["firmware"] = firmware
    plan = plan_release(path, artifacts=arts, strict_sectors=strict_sectors, meta=meta, allow_dirs=allow_dirs)
    mpath, changed = write_release(out_dir, plan.manifest, plan.layout.blobs)
    return BuildResult(plan.manifest, plan.board, mpath, plan.warnings, changed)
