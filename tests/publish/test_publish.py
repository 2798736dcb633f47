"""Publishing to a real S3 server: incremental, immutable, never half visible."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sparkflash.errors import InputError, PublishError, VerifyError
from sparkflash.manifest.keys import FileSigner, TrustStore
from sparkflash.manifest.release import blob_key
from sparkflash.publish.fetch import fetch_release
from sparkflash.publish.local_server import LocalS3Process
from sparkflash.publish.store import ClientOptions, parse_s3_url
from sparkflash.publish.upload import PublishOptions, publish

KiB = 1024
BUCKET = "sparkflash-test"  # created by the s3_server fixture
MakeRelease = Callable[..., Path]


def _blobs(seed: int = 0) -> dict[str, bytes]:
    return {"font": bytes([seed, 1]) * (8 * KiB), "web": bytes([seed, 2]) * (4 * KiB), "logo": bytes([seed, 3]) * KiB}


def test_publish_twice_uploads_no_blob_bytes_the_second_time(make_release: MakeRelease, signer: FileSigner,
                                                           s3_url: str, s3_client: Any) -> None:
    dist = make_release("1.0.0", _blobs())
    first = publish(dist, s3_url, signer=signer)
    assert first.manifest_status == "created"
    assert first.bytes_uploaded == sum(len(b) for b in _blobs().values()) == 26 * KiB
    second = publish(dist, s3_url, signer=signer)
    assert second.manifest_status == "unchanged"
    assert second.bytes_uploaded == 0
    assert {b.status for b in second.blobs} == {"present"}
    loc = parse_s3_url(s3_url)
    manifest = s3_client.get_object(Bucket=BUCKET, Key=loc.key("releases/tiny/1.0.0/manifest.json"))["Body"].read()
    assert manifest == (dist / "manifest.json").read_bytes()


def test_new_version_uploads_only_the_changed_blob(make_release: MakeRelease, signer: FileSigner, s3_url: str) -> None:
    publish(make_release("1.0.0", _blobs()), s3_url, signer=signer)
    changed = {**_blobs(), "web": b"\x42" * (4 * KiB)}
    report = publish(make_release("1.1.0", changed), s3_url, signer=signer)
    assert report.manifest_status == "created"
    assert [(b.regions, b.status) for b in report.blobs] == [(["font"], "present"), (["web"], "uploaded"),
                                                             (["logo"], "present")]
    assert report.bytes_uploaded == 4 * KiB


def test_republishing_a_version_with_other_content_is_refused(make_release: MakeRelease, signer: FileSigner,
                                                              trust: TrustStore, s3_url: str, tmp_path: Path) -> None:
    first = (make_release("1.0.0", _blobs()) / "manifest.json").read_bytes()
    publish(tmp_path / "dist-tiny-1.0.0", s3_url, signer=signer)
    other = make_release("1.0.0", _blobs(seed=9))  # same name and version, other bytes
    assert (other / "manifest.json").read_bytes() != first
    with pytest.raises(PublishError, match="already published with different content"):
        publish(other, s3_url, signer=signer)
    got = fetch_release(f"{s3_url}/releases/tiny/1.0.0", trust=trust, cache=tmp_path / "cache")
    assert got.read_bytes() == first  # still the first release, and its signature still verifies


def _digests(manifest: Path) -> list[str]:
    from sparkflash.manifest.model import Manifest

    return [r.sha256 for r in Manifest.from_bytes(manifest.read_bytes()).regions]


def test_unsigned_or_foreign_release_is_not_published(make_release: MakeRelease, signer: FileSigner, s3_url: str,
                                                      tmp_path: Path) -> None:
    dist = make_release("1.0.0", _blobs())
    with pytest.raises(InputError, match="--key or --trust"):
        publish(dist, s3_url)
    (dist / "manifest.json.sig").unlink()
    with pytest.raises(VerifyError, match="unsigned release"):
        publish(dist, s3_url, signer=signer)


def test_large_blob_goes_up_in_checksummed_parts(make_release: MakeRelease, signer: FileSigner, trust: TrustStore,
                                                 s3_url: str, tmp_path: Path) -> None:
    big = bytes(range(256)) * (640 * 4)  # 640 KiB: parts of 256 KiB (the s3_server fixture's minimum)
    events: list[dict[str, Any]] = []
    opts = PublishOptions(multipart_threshold=512 * KiB, part_size=256 * KiB)
    report = publish(make_release("1.0.0", {"big": big}), s3_url, signer=signer, options=opts, on_event=events.append)
    assert report.bytes_uploaded == len(big)
    assert [e["done"] for e in events if e["event"] == "progress"] == [256 * KiB, 512 * KiB, len(big)]
    got = fetch_release(f"{s3_url}/releases/tiny/1.0.0", trust=trust, cache=tmp_path / "cache")
    assert (got.parent / blob_key(_digests(got)[0])).read_bytes() == big


def test_killed_server_leaves_no_manifest_and_a_rerun_completes(make_release: MakeRelease, signer: FileSigner,
                                                               tmp_path: Path, aim_s3: Callable[[str], None]) -> None:
    data = tmp_path / "s3-data"
    dist = make_release("1.0.0", _blobs())
    url = "s3://crashy/rel"
    server = LocalS3Process(data=data, buckets=["crashy"]).start()
    aim_s3(server.endpoint)
    blobs_done: list[str] = []

    def crash_after_first_blob(ev: dict[str, Any]) -> None:
        if ev["event"] == "blob-done":
            blobs_done.append(ev["sha256"])
            server.kill()

    fast = ClientOptions(max_attempts=1, connect_timeout=2, read_timeout=5)
    try:
        with pytest.raises(PublishError, match="cannot reach"):
            publish(dist, url, signer=signer, client_options=fast, on_event=crash_after_first_blob)
    finally:
        server.kill()
    assert len(blobs_done) == 1
    server = LocalS3Process(data=data).start()  # same data, new port: what the server had acknowledged
    aim_s3(server.endpoint)
    try:
        import boto3

        c = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
        keys = sorted(o["Key"] for o in c.list_objects_v2(Bucket="crashy").get("Contents", []))
        assert keys == [f"rel/{blob_key(blobs_done[0])}"]  # the first blob, and no release manifest
        report = publish(dist, url, signer=signer)
        assert report.manifest_status == "created"
        assert [b.status for b in report.blobs] == ["present", "uploaded", "uploaded"]
        assert report.bytes_uploaded == 10 * KiB  # web + logo
    finally:
        server.stop()


def test_cli_publish_creates_the_bucket_only_when_asked(make_release: MakeRelease, s3_url: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from sparkflash.cli import main

    dist = make_release("1.0.0", _blobs())
    bucket = f"fresh-{tmp_path.name[-20:].lower().replace('_', '-')}"
    key = str(tmp_path / "keys" / "release.pem")
    assert main(["publish", str(dist), f"s3://{bucket}/p", "--key", key]) == 6
    assert f"bucket '{bucket}' does not exist" in capsys.readouterr().err
    assert main(["publish", str(dist), f"s3://{bucket}/p", "--key", key, "--create-bucket", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["event"] for x in lines if x["event"] != "progress"][-2:] == ["publish-done", "result"]
    assert lines[-1]["bytes_uploaded"] == 26 * KiB and lines[-1]["manifest"] == "created"


def test_channel_without_a_key_is_refused_before_any_upload(make_release: MakeRelease, trust: TrustStore,
                                                            s3_url: str, s3_client: Any) -> None:
    with pytest.raises(InputError, match="must be signed; pass --key"):
        publish(make_release("1.0.0", _blobs()), s3_url, trust=trust, channel="stable")
    assert s3_client.list_objects_v2(Bucket=BUCKET, Prefix=parse_s3_url(s3_url).prefix).get("KeyCount") == 0


def test_a_damaged_blob_object_is_replaced_by_the_right_bytes(make_release: MakeRelease, signer: FileSigner,
                                                              trust: TrustStore, s3_url: str, s3_client: Any,
                                                              tmp_path: Path) -> None:
    dist = make_release("1.0.0", _blobs())
    sha = next(b.sha256 for b in publish(dist, s3_url, signer=signer).blobs if b.regions == ["web"])
    key = parse_s3_url(s3_url).key(blob_key(sha))
    s3_client.put_object(Bucket=BUCKET, Key=key, Body=b"truncated")
    report = publish(dist, s3_url, signer=signer)
    assert [(b.regions, b.status) for b in report.blobs if b.status != "present"] == [(["web"], "repaired")]
    assert s3_client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == _blobs()["web"]
    fetch_release(f"{s3_url}/releases/tiny/1.0.0", trust=trust, cache=tmp_path / "cache")


def test_local_server_listens_on_loopback_only() -> None:
    from sparkflash.publish.local_server import LocalS3

    with pytest.raises(InputError, match="only listens on loopback"):
        LocalS3(host="0.0.0.0")
