"""Deploying from s3://: nothing unverified leaves the bucket, nothing reaches the device before that."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cli import main
from sparkflash.errors import PublishError, VerifyError
from sparkflash.manifest.keys import FileSigner, TrustStore
from sparkflash.manifest.model import Manifest
from sparkflash.manifest.release import blob_key
from sparkflash.publish.fetch import fetch_release
from sparkflash.publish.store import parse_s3_url
from sparkflash.publish.upload import publish

KiB = 1024
BUCKET = "sparkflash-test"
MakeRelease = Callable[..., Path]
BLOBS = {"font": b"\x11" * (8 * KiB), "web": b"\x22" * (4 * KiB)}


def _put(client: Any, url: str, rel_key: str, data: bytes) -> None:
    """Overwrite an object behind sparkflash's back, as a bad actor or a broken sync would."""
    client.put_object(Bucket=BUCKET, Key=parse_s3_url(url).key(rel_key), Body=data)


def test_fetch_verifies_and_caches_by_digest(make_release: MakeRelease, signer: FileSigner, trust: TrustStore,
                                             s3_url: str, tmp_path: Path) -> None:
    dist = make_release("1.0.0", BLOBS)
    publish(dist, s3_url, signer=signer)
    events: list[dict[str, Any]] = []
    got = fetch_release(f"{s3_url}/releases/tiny/1.0.0", trust=trust, on_event=events.append)
    assert got.read_bytes() == (dist / "manifest.json").read_bytes()
    assert got.with_name("manifest.json.sig").read_bytes() == (dist / "manifest.json.sig").read_bytes()
    for r in Manifest.from_bytes(got.read_bytes()).regions:
        assert (got.parent / blob_key(r.sha256)).read_bytes() == BLOBS[r.name]
    assert set(events[-1]["blobs"].values()) == {"downloaded"}
    events.clear()
    fetch_release(f"{s3_url}/releases/tiny/1.0.0", trust=trust, on_event=events.append)
    assert set(events[-1]["blobs"].values()) == {"cached"}


def test_altered_blob_is_refused_and_never_cached(make_release: MakeRelease, signer: FileSigner, trust: TrustStore,
                                                  s3_url: str, s3_client: Any, tmp_path: Path) -> None:
    dist = make_release("1.0.0", BLOBS)
    publish(dist, s3_url, signer=signer)
    sha = Manifest.from_bytes((dist / "manifest.json").read_bytes()).region("web").sha256
    _put(s3_client, s3_url, blob_key(sha), b"\x23" * (4 * KiB))  # same size, other bytes
    with pytest.raises(VerifyError, match="region 'web' blob does not match"):
        fetch_release(f"{s3_url}/releases/tiny/1.0.0", trust=trust, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / blob_key(sha)).exists()
    assert not list((tmp_path / "cache").rglob("manifest.json"))


def test_altered_manifest_is_refused(make_release: MakeRelease, signer: FileSigner, trust: TrustStore,
                                     s3_url: str, s3_client: Any) -> None:
    dist = make_release("1.0.0", BLOBS)
    publish(dist, s3_url, signer=signer)
    doc = json.loads((dist / "manifest.json").read_bytes())
    doc["regions"][0]["address"] += 0x1000  # still canonical, still parses: only the signature can tell
    forged = (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()
    _put(s3_client, s3_url, "releases/tiny/1.0.0/manifest.json", forged)
    with pytest.raises(VerifyError, match="signature does not match"):
        fetch_release(f"{s3_url}/releases/tiny/1.0.0", trust=trust)


def test_channel_follows_the_latest_publish_and_is_signed(make_release: MakeRelease, signer: FileSigner,
                                                          trust: TrustStore, s3_url: str, s3_client: Any) -> None:
    publish(make_release("1.0.0", BLOBS), s3_url, signer=signer, channel="stable")
    report = publish(make_release("1.1.0", {**BLOBS, "web": b"\x33" * KiB}), s3_url, signer=signer, channel="stable")
    assert report.channel is not None and report.channel["previous"] == "1.0.0"
    got = fetch_release(f"{s3_url}/tiny", channel="stable", trust=trust)
    assert Manifest.from_bytes(got.read_bytes()).version == "1.1.0"
    with pytest.raises(PublishError, match="no channel 'beta'.*channels: stable"):
        fetch_release(f"{s3_url}/tiny", channel="beta", trust=trust)
    key = parse_s3_url(s3_url).key("channels/tiny/stable.json")
    doc = json.loads(s3_client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    doc["record"]["version"] = "1.0.0"  # roll the channel back without the key
    s3_client.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(doc).encode())
    with pytest.raises(VerifyError, match="channel record signature does not match"):
        fetch_release(f"{s3_url}/tiny", channel="stable", trust=trust)


def test_cli_deploy_of_an_altered_release_exits_3_with_the_device_untouched(
        make_release: MakeRelease, signer: FileSigner, s3_url: str, s3_client: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from sparkflash.virtual.state import CoreState

    dist = make_release("1.0.0", BLOBS)
    publish(dist, s3_url, signer=signer)
    sha = Manifest.from_bytes((dist / "manifest.json").read_bytes()).region("font").sha256
    _put(s3_client, s3_url, blob_key(sha), b"\x00" * (8 * KiB))
    core = tmp_path / "core"
    CoreState.open(core).close()
    before = {p.name: p.read_bytes() for p in core.iterdir() if p.is_file()}
    rc = main(["deploy", f"{s3_url}/releases/tiny/1.0.0", "--trust", str(tmp_path / "keys"),
               "--via", "dfu", "--device", f"virtual:{core}"])
    assert rc == 3
    assert "region 'font' blob does not match the signed manifest" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in core.iterdir() if p.is_file()} == before


def test_cli_deploys_a_channel_release_from_s3_to_a_virtual_core(
        make_release: MakeRelease, signer: FileSigner, s3_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from sparkflash.virtual.core import CoreOptions, VirtualCore

    dist = make_release("1.0.0", BLOBS)
    publish(dist, s3_url, signer=signer, channel="stable")
    with VirtualCore(tmp_path / "core", CoreOptions(dfu_poll=False, endpoints=("dfu",))) as core:
        rc = main(["deploy", f"{s3_url}/tiny", "--channel", "stable", "--trust", str(tmp_path / "keys"),
                   "--via", "dfu", "--device", f"virtual:{tmp_path / 'core'}", "--json"])
        out = capsys.readouterr().out
        assert rc == 0, out
        for r in Manifest.from_bytes((dist / "manifest.json").read_bytes()).regions:
            assert core.state.external.read(r.address, r.size) == BLOBS[r.name]
    result = json.loads(out.splitlines()[-1])
    assert result["ok"] is True
