"""Releases by reference: the server fetches an s3:// release (or a channel's) itself from a real S3
server (moto, `sparkflash s3-local`), verifies it with its own trust store, caches the blobs by
digest, and refuses a tampered blob or a downgrade below the device's verified release."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from typing import Any

import pytest

from sparkflash.errors import InputError, VerifyError
from sparkflash.manifest.release import blob_key

BUCKET = "fleet-releases"


def wait_done(fleet: Any, rid: str, timeout: float = 60.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = fleet.client.call("GET", f"/v1/deployments/{rid}")
        if st["done"]:
            return st  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"deployment {rid} did not end")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_channel_release_fetched_verified_and_cached_by_the_server(fleet: Any, publish_release: Any) -> None:
    prefix = f"p-{uuid.uuid4().hex[:8]}"
    data = os.urandom(20_000)
    publish_release(prefix, "2.0.0", data, channel="stable")
    [dev] = fleet.add(1, prefix="7a")
    rid = fleet.client.call("POST", "/v1/deployments", {"release": f"channel:s3://{BUCKET}/{prefix}/web#stable",
                                                       "devices": [dev.id]})["id"]
    st = wait_done(fleet, rid)
    assert st["ok"] and [r["status"] for r in st["results"][0]["regions"]] == ["verified"], st
    assert dev.flash.read(0x80000, len(data)) == data
    sha = hashlib.sha256(data).hexdigest()
    assert (fleet.server.store.root / blob_key(sha)).read_bytes() == data  # cached by digest in the server's store
    r = fleet.server.db.rollout(rid)
    assert r.release_ref == f"s3://{BUCKET}/{prefix}/releases/web/2.0.0"  # the channel pinned once, at creation
    [row] = [d for d in fleet.client.call("GET", "/v1/devices")["devices"] if d["id"] == dev.id]
    assert row["release"]["name"] == "web" and row["release"]["version"] == "2.0.0"  # verified by its digest

    publish_release(prefix, "1.0.0", os.urandom(100))
    with pytest.raises(InputError, match="older than 2.0.0.*release record"):
        fleet.client.call("POST", "/v1/deployments", {"release": f"s3://{BUCKET}/{prefix}/releases/web/1.0.0",
                                                      "devices": [dev.id]})


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_tampered_or_unsigned_s3_release_and_a_path_are_refused(fleet: Any, publish_release: Any) -> None:
    import boto3

    prefix = f"p-{uuid.uuid4().hex[:8]}"
    data = os.urandom(5000)
    publish_release(prefix, "1.0.0", data)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{blob_key(hashlib.sha256(data).hexdigest())}", Body=b"x" * 5000)
    [dev] = fleet.add(1, prefix="7b")
    with pytest.raises(VerifyError, match="does not match the signed manifest"):
        fleet.client.call("POST", "/v1/deployments", {"release": f"s3://{BUCKET}/{prefix}/releases/web/1.0.0",
                                                      "devices": [dev.id]})
    s3.delete_object(Bucket=BUCKET, Key=f"{prefix}/releases/web/1.0.0/manifest.json.sig")
    with pytest.raises(VerifyError, match="unsigned"):
        fleet.client.call("POST", "/v1/deployments", {"release": f"s3://{BUCKET}/{prefix}/releases/web/1.0.0",
                                                      "devices": [dev.id]})
    for bad in ("/etc/passwd", "file:///etc/passwd", f"s3://{BUCKET}/../etc", "http://example.com/r"):
        with pytest.raises(InputError, match="not valid"):
            fleet.client.call("POST", "/v1/deployments", {"release": bad, "devices": [dev.id]})
    assert dev.flash.sectors == {} and fleet.server.db.rollouts() == []


def test_many_deployments_opening_one_release_at_once_all_get_it(publish_release: Any, keys: Any, s3_endpoint: str,
                                                                 tmp_path: Any) -> None:
    """An instance that did not create a rollout opens its release on its first claims, many at once (each
    deployment in a worker thread): every one gets the same verified release, fetched into the cache once
    (concurrent fetches into one cache directory raced on its files: a device failed)."""
    from concurrent.futures import ThreadPoolExecutor

    from sparkflash.cloud.releases import BlobStore, ReleaseSource
    from sparkflash.manifest.keys import TrustStore

    data = os.urandom(20_000)
    ref = publish_release(f"c-{uuid.uuid4().hex[:8]}", "1.2.0", data)
    src = ReleaseSource(BlobStore(tmp_path / "store"), TrustStore.from_paths([keys / "release.pub.pem"]), False,
                        endpoint_url=s3_endpoint)
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda _: src.open(ref), range(32)))
    assert len({id(r) for r in got}) == 1 and got[0].signature is not None
    (region,) = got[0].manifest.regions
    assert got[0].blob(region) == data and region.sha256 == hashlib.sha256(data).hexdigest()
