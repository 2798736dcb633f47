"""The release (scons manifest) is decided by the content of its YAML and blobs: an edit
undone within the same second, which SCons' recorded whole-second mtime cannot see, still
gives the manifest of the YAML on disk (issue #12 point 3)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from sparkflash.firmware.workspace import REPO_ROOT, run_scons


def _manifest(checkout: Path) -> bytes:
    r = run_scons(checkout, "-j2", "manifest")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return (checkout / "build/release/dist/manifest.json").read_bytes()


def _set(path: Path, text: str, mtime_ns: int | None = None) -> None:
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_edit_undone_within_a_second_is_seen(fresh_checkout: Path) -> None:
    shutil.copytree(REPO_ROOT / "manifests", fresh_checkout / "manifests", symlinks=True)
    yaml = fresh_checkout / "manifests/example.yaml"
    original = yaml.read_text()
    first = _manifest(fresh_checkout)
    edited = original.replace('version: "1.0.0"', 'version: "1.0.1"')
    _set(yaml, edited)
    stamp = yaml.stat().st_mtime_ns
    second = _manifest(fresh_checkout)
    assert second != first and b"1.0.1" in second
    _set(yaml, original, mtime_ns=stamp)  # undone "within the same second": same mtime
    time.sleep(1.2)  # the restored mtime is a second older than the records: SCons would trust them
    assert _manifest(fresh_checkout) == first


def test_blob_edit_undone_within_a_second_is_seen(fresh_checkout: Path) -> None:
    shutil.copytree(REPO_ROOT / "manifests", fresh_checkout / "manifests", symlinks=True)
    blob = next(p for p in sorted((fresh_checkout / "manifests/example/web").rglob("*")) if p.is_file())
    original = blob.read_bytes()
    first = _manifest(fresh_checkout)
    blob.write_bytes(original[::-1] + b"x")
    stamp = blob.stat().st_mtime_ns
    assert _manifest(fresh_checkout) != first
    blob.write_bytes(original)
    os.utime(blob, ns=(stamp, stamp))
    time.sleep(1.2)
    assert _manifest(fresh_checkout) == first
