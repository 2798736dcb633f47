"""Recovery after interrupted or damaged publishes, and refusing early (issue #16, point 5)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cli import main
from sparkflash.manifest.keys import FileSigner, TrustStore
from sparkflash.manifest.release import blob_key
from sparkflash.publish.fetch import fetch_release
from sparkflash.publish.store import parse_s3_url
from sparkflash.publish.upload import publish

BUCKET = "sparkflash-test"
KiB = 1024
MakeRelease = Callable[..., Path]


def _blobs(seed: int = 0) -> dict[str, bytes]:
    return {"font": bytes([seed, 1]) * (8 * KiB), "web": bytes([seed, 2]) * (4 * KiB)}


def test_a_signature_without_its_manifest_is_replaced_by_a_rerun(
        make_release: MakeRelease, signer: FileSigner, trust: TrustStore, s3_url: str, s3_client: Any,
        tmp_path: Path) -> None:
    """A publish killed between the signature and the manifest; the release is then rebuilt
    with other content under the same version and published: it must not be blocked."""
    loc = parse_s3_url(s3_url)
    killed = make_release("1.0.0", _blobs(seed=1), name="tiny")
    s3_client.put_object(Bucket=BUCKET, Key=loc.key("releases/tiny/1.0.0/manifest.json.sig"),
                         Body=(killed / "manifest.json.sig").read_bytes())
    rebuilt = make_release("1.0.0", _blobs(seed=2), name="tiny")
    report = publish(rebuilt, s3_url, signer=signer)
    assert report.manifest_status == "created" and report.replaced_orphan_signature
    got = fetch_release(f"{s3_url}/releases/tiny/1.0.0", trust=trust, cache=tmp_path / "cache")
    assert got.read_bytes() == (rebuilt / "manifest.json").read_bytes()  # and its signature verified


def test_a_same_size_damaged_blob_is_verified_and_repaired(
        make_release: MakeRelease, signer: FileSigner, trust: TrustStore, s3_url: str, s3_client: Any,
        tmp_path: Path) -> None:
    dist = make_release("1.0.0", _blobs())
    sha = next(b.sha256 for b in publish(dist, s3_url, signer=signer).blobs if b.regions == ["web"])
    key = parse_s3_url(s3_url).key(blob_key(sha))
    # same size, other bytes, and the RIGHT stored checksum (a server that does not validate it)
    s3_client.put_object(Bucket=BUCKET, Key=key, Body=b"\x00" * len(_blobs()["web"]),
                         ChecksumSHA256=base64.b64encode(bytes.fromhex(sha)).decode())
    report = publish(dist, s3_url, signer=signer)
    assert {tuple(b.regions): b.status for b in report.blobs} == {("font",): "present", ("web",): "repaired"}
    assert s3_client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == _blobs()["web"]
    fetch_release(f"{s3_url}/releases/tiny/1.0.0", trust=trust, cache=tmp_path / "cache")


@pytest.mark.parametrize("signed", [True, False])
def test_deploy_without_trust_refuses_before_any_blob_download(
        make_release: MakeRelease, signer: FileSigner, s3_url: str, tmp_path: Path, signed: bool,
        s3_client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    big = {"font": bytes(range(256)) * (256), "web": b"w" * (64 * KiB)}  # 128 KiB of blobs
    dist = make_release("1.0.0", big)
    publish(dist, s3_url, signer=signer)
    if not signed:
        s3_client.delete_object(Bucket=BUCKET, Key=parse_s3_url(s3_url).key("releases/tiny/1.0.0/manifest.json.sig"))
    cache = tmp_path / "cache"
    rc = main(["deploy", f"{s3_url}/releases/tiny/1.0.0", "--cache", str(cache), "--via", "dfu",
               "--device", f"virtual:{tmp_path / 'core'}"])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert ("unsigned release" if not signed else "no key is trusted") in err
    assert not (cache / "blobs").exists() or not any((cache / "blobs").rglob("*")), "a blob was downloaded"


def test_deploy_without_trust_and_with_no_verify_signature_still_works(
        make_release: MakeRelease, signer: FileSigner, s3_url: str, tmp_path: Path) -> None:
    dist = make_release("1.0.0", _blobs())
    publish(dist, s3_url, signer=signer)
    got = fetch_release(f"{s3_url}/releases/tiny/1.0.0", cache=tmp_path / "cache", require_signature=False)
    assert got.read_bytes() == (dist / "manifest.json").read_bytes()
