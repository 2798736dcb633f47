"""The same release gives the same bytes: across runs, directories, cwd and hash seeds.

The golden digest pins the canonical form itself, so a change of key order, whitespace or
number format (which would break every signature already issued) fails here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sparkflash.errors import InputError
from sparkflash.manifest.build import build_release
from sparkflash.manifest.model import Manifest
from sparkflash.manifest.pack import pack_dir, pack_files, unpack

ROOT = Path(__file__).resolve().parents[2]

RELEASE = """
name: canon
version: "2.1.0-rc.1"
board: spark-core
description: "ünïcode"           # escaped to ASCII
regions:
  - name: fw
    kind: firmware
    source: {build: firmware}
  - name: font
    area: user
    source: {generate: hexfont, first: 0x20, count: 95}
  - name: web
    memory: external
    address: 0x100000
    source: {dir: web}
    align: 0x1000
"""

# sha256 of manifest.json for RELEASE with the conftest firmware; update only on purpose.
GOLDEN_SHA256 = "48cc74d5c8db1ab41dbbafc01f57d39e9b6d9ca9a1bd74cd3cca8eae3c1148a0"


def make_tree(root: Path) -> Path:
    (root / "web" / "js").mkdir(parents=True, exist_ok=True)
    (root / "web" / "index.html").write_text("<h1>core</h1>\n")
    (root / "web" / "js" / "app.js").write_text("console.log(1)\n")
    (root / "web" / "zz.txt").write_bytes(b"last")
    (root / "release.yaml").write_text(RELEASE.lstrip("\n"))
    return root / "release.yaml"


def tree_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_two_builds_in_different_places_are_byte_identical(tmp_path: Path, firmware: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    a = make_tree(tmp_path / "checkout-a")
    b = make_tree(tmp_path / "somewhere" / "else" / "checkout-b")
    build_release(a, tmp_path / "out-a", firmware=firmware)
    monkeypatch.chdir(tmp_path / "somewhere")
    build_release(b.relative_to(tmp_path / "somewhere"), Path("out-b"), firmware=firmware)
    assert tree_bytes(tmp_path / "out-a") == tree_bytes(tmp_path / "somewhere" / "out-b")


def test_rebuild_is_identical_and_reports_unchanged(tmp_path: Path, firmware: Path) -> None:
    y = make_tree(tmp_path)
    first = build_release(y, tmp_path / "out", firmware=firmware)
    before = tree_bytes(tmp_path / "out")
    again = build_release(y, tmp_path / "out", firmware=firmware)
    assert (first.changed, again.changed) == (True, False)
    assert tree_bytes(tmp_path / "out") == before


def test_file_order_and_mtimes_do_not_matter(tmp_path: Path) -> None:
    make_tree(tmp_path / "a")
    make_tree(tmp_path / "b")
    os.utime(tmp_path / "b" / "web" / "index.html", (0, 0))
    assert pack_dir(tmp_path / "a" / "web") == pack_dir(tmp_path / "b" / "web")
    files = {"b": b"2", "a/x": b"1", "ä": b"3"}
    assert pack_files(files) == pack_files(dict(reversed(files.items())))
    assert unpack(pack_files(files)) == files


def test_pack_refuses_symlinks(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "web" / "link").symlink_to(tmp_path / "release.yaml")
    with pytest.raises(InputError, match="symbolic links are not packed"):
        pack_dir(tmp_path / "web")


def test_canonical_form_round_trips_and_refuses_edits(tmp_path: Path, firmware: Path) -> None:
    res = build_release(make_tree(tmp_path), tmp_path / "out", firmware=firmware)
    raw = res.manifest_path.read_bytes()
    assert Manifest.from_bytes(raw) == res.manifest
    assert raw.isascii() and raw.endswith(b"}\n") and b" " not in raw and b"\\u00fcn\\u00efcode" in raw
    pretty = raw.replace(b",", b", ")
    with pytest.raises(InputError, match="not in canonical form"):
        Manifest.from_bytes(pretty)


def test_golden_digest(tmp_path: Path, firmware: Path) -> None:
    res = build_release(make_tree(tmp_path), tmp_path / "out", firmware=firmware)
    assert hashlib.sha256(res.manifest_path.read_bytes()).hexdigest() == GOLDEN_SHA256


def test_cli_in_fresh_processes_with_other_hash_seeds(tmp_path: Path, firmware: Path) -> None:
    y = make_tree(tmp_path / "src")
    outs = []
    for seed in ("0", "4242"):
        out = tmp_path / f"out-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "LC_ALL": "C", "TZ": "Pacific/Kiritimati"}
        subprocess.run([sys.executable, "-m", "sparkflash", "manifest", "build", str(y), "--firmware", str(firmware),
                        "--out", str(out)], env=env, cwd=tmp_path, check=True, capture_output=True)
        outs.append(tree_bytes(out))
    assert outs[0] == outs[1]
    shutil.rmtree(tmp_path / "src")
