"""`scons release` / `scons publish` in a throwaway project: the real SCons, the real local S3 server."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

from sparkflash.publish.local_server import LocalS3Process

SITE_TOOLS = Path(__file__).resolve().parents[2] / "site_scons" / "sparkflash" / "scons"
SCONSTRUCT = f"""
import os
env = Environment(tools=[], toolpath=[{str(SITE_TOOLS)!r}], ENV={{"PATH": os.environ["PATH"]}})
env["SPARKFLASH_VARIANT_DIR"] = env.Dir("#build/test")
env.Tool("sparkflash_deploy")   # before the release tool on purpose: the order must not matter
env.Tool("sparkflash_release")
"""
RELEASE = """name: tiny
version: "{version}"
board: spark-core
regions:
  - name: font
    memory: external
    address: 0x80000
    source: {{generate: hexfont, first: 0x20, count: 64}}
  - name: note
    memory: external
    address: 0x90000
    source: {{file: note.txt}}
"""


def _scons(project: Path, s3: LocalS3Process, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    env.pop("AWS_ENDPOINT_URL", None)
    scons = Path(sys.executable).with_name("scons")
    return subprocess.run([str(scons), "-Q", f"ENDPOINT={s3.endpoint}", "BUCKET=sparkflash-test", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)


def _summary(out: str) -> dict[str, object]:
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(docs) == 1, out
    return docs[0]


def test_scons_release_builds_signs_publishes_and_summarises(tmp_path: Path, s3_server: LocalS3Process) -> None:
    (tmp_path / "SConstruct").write_text(SCONSTRUCT)
    (tmp_path / "tiny.yaml").write_text(RELEASE.format(version="1.0.0"))
    (tmp_path / "note.txt").write_text("hello\n")
    prefix = f"PREFIX=scons-{tmp_path.name}"
    first = _scons(tmp_path, s3_server, "MANIFEST=tiny.yaml", prefix, "CHANNEL=stable", "release")
    assert first.returncode == 0, first.stderr
    doc = _summary(first.stdout)
    assert (doc["name"], doc["version"], doc["manifest"]) == ("tiny", "1.0.0", "created")
    assert doc["bytes_uploaded"] == 16 + 64 * 32 + 6 and doc["blobs_uploaded"] == 2
    assert set(doc["digests"]) == {"font", "note"}  # type: ignore[arg-type]
    assert (tmp_path / "build/test/dist/manifest.json.sig").exists()

    again = _scons(tmp_path, s3_server, "MANIFEST=tiny.yaml", prefix, "release")
    assert again.returncode == 0, again.stderr
    assert (_summary(again.stdout)["manifest"], _summary(again.stdout)["bytes_uploaded"]) == ("unchanged", 0)

    (tmp_path / "note.txt").write_text("changed, same version\n")
    refused = _scons(tmp_path, s3_server, "MANIFEST=tiny.yaml", prefix, "publish")
    assert refused.returncode != 0
    assert "already published with different content" in refused.stderr


def test_scons_publish_without_bucket_says_what_to_pass(tmp_path: Path, s3_server: LocalS3Process) -> None:
    (tmp_path / "SConstruct").write_text(SCONSTRUCT)
    (tmp_path / "tiny.yaml").write_text(RELEASE.format(version="1.0.0"))
    (tmp_path / "note.txt").write_text("hello\n")
    r = subprocess.run([str(Path(sys.executable).with_name("scons")), "-Q", "MANIFEST=tiny.yaml", "publish"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "pass BUCKET=name" in r.stderr


FLASHABLE = """name: tiny
version: "1.0.0"
board: spark-core
regions:
  - name: firmware
    kind: firmware
    memory: internal
    address: 0x08005000
    source: {file: fw.bin}
  - name: note
    memory: external
    address: 0x90000
    source: {file: note.txt}
"""


def test_scons_flash_ext_then_flash_write_their_regions_by_dfu(tmp_path: Path, s3_server: LocalS3Process) -> None:
    from sparkflash.virtual.core import CoreOptions, VirtualCore

    (tmp_path / "SConstruct").write_text(SCONSTRUCT)
    (tmp_path / "tiny.yaml").write_text(FLASHABLE)
    (tmp_path / "note.txt").write_bytes(b"external note\n")
    fw = struct.pack("<II", 0x20005000, 0x08005101) + bytes(range(256)) * 8  # SP, Thumb reset handler, code
    (tmp_path / "fw.bin").write_bytes(fw)
    core_dir = tmp_path / "core"
    with VirtualCore(core_dir, CoreOptions(dfu_poll=False, endpoints=("dfu",))) as core:
        blank_app = core.state.internal.read(0x08005000, len(fw))
        ext = _scons(tmp_path, s3_server, "MANIFEST=tiny.yaml", "VIA=dfu", f"DEVICE=virtual:{core_dir}", "flash-ext")
        assert ext.returncode == 0, ext.stdout + ext.stderr
        assert core.state.external.read(0x90000, 14) == b"external note\n"
        assert core.state.internal.read(0x08005000, len(fw)) == blank_app  # flash-ext leaves the firmware alone
        fl = _scons(tmp_path, s3_server, "MANIFEST=tiny.yaml", f"DEVICE=virtual:{core_dir}", "flash")
        assert fl.returncode == 0, fl.stdout + fl.stderr
        assert core.state.internal.read(0x08005000, len(fw)) == fw
