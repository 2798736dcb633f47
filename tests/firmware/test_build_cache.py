"""The toolchain's hashes and make's plan outlive build/ (sparkflash.firmware.buildcache):
a clean build after `rm -r build .sconsign*` reuses them instead of hashing ~170 MB
and running make again; SPARKFLASH_BUILD_CACHE=off keeps them in the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparkflash.firmware.buildcache import build_cache_dir, prune
from sparkflash.firmware.workspace import clean_scons, run_scons

KINDS = ("makeplan-", "toolchain-files-", "toolchain-content-")


def _build(checkout: Path, **env: str) -> None:
    r = run_scons(checkout, "-j2", env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def _records(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.name.startswith(KINDS)} if d.is_dir() else {}


def test_records_survive_a_clean_build_dir(fresh_checkout: Path, tmp_path: Path) -> None:
    cache = tmp_path / "user-cache"
    _build(fresh_checkout, SPARKFLASH_BUILD_CACHE=str(cache))
    first = _records(cache)
    assert {k for k in KINDS if any(n.startswith(k) for n in first)} == set(KINDS)
    assert _records(fresh_checkout / "build/.sparkflash") == {}
    clean_scons(fresh_checkout)
    _build(fresh_checkout, SPARKFLASH_BUILD_CACHE=str(cache))
    assert _records(cache) == first  # nothing probed or hashed again: no record rewritten
    assert (fresh_checkout / "build/release/firmware.bin").stat().st_size > 0


def test_off_keeps_them_in_the_checkout(fresh_checkout: Path) -> None:
    _build(fresh_checkout, SPARKFLASH_BUILD_CACHE="off")
    names = _records(fresh_checkout / "build/.sparkflash")
    assert {k for k in KINDS if any(n.startswith(k) for n in names)} == set(KINDS)


def test_unusable_cache_dir_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SPARKFLASH_BUILD_CACHE", str(blocker / "cache"))
    assert build_cache_dir(tmp_path / "fallback") == tmp_path / "fallback"
    monkeypatch.delenv("SPARKFLASH_BUILD_CACHE")
    monkeypatch.setenv("SPARKFLASH_HOME", str(tmp_path / "home"))
    assert build_cache_dir(tmp_path / "fallback") == tmp_path / "home/cache/build"


def test_prune_keeps_the_newest_records_and_others_temporaries(tmp_path: Path) -> None:
    for i in range(70):
        p = tmp_path / f"makeplan-{i:02d}.json"
        p.write_text("{}")
        os.utime(p, ns=(i * 10**9, i * 10**9))
    (tmp_path / "makeplan-99.1234.tmp").write_text("{}")  # another process is writing it
    (tmp_path / "toolchain-files-a.json").write_text("{}")
    prune(tmp_path, "makeplan-", keep=64)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [f"makeplan-{i:02d}.json" for i in range(6, 70)] + ["makeplan-99.1234.tmp", "toolchain-files-a.json"]
