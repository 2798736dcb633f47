"""Rollback and freeze attacks on channels and the downgrade check (issue #16, point 1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cli.deploy_cmd import adhoc_release
from sparkflash.deploy.base import ProgressFn, WriteReport
from sparkflash.deploy.run import Ledger, deploy_release
from sparkflash.errors import InputError, VerifyError
from sparkflash.manifest.keys import FileSigner, TrustStore
from sparkflash.manifest.model import Manifest, Region
from sparkflash.manifest.release import digests, open_release
from sparkflash.publish.channel import ChannelRecord, sign_channel
from sparkflash.publish.fetch import fetch_release
from sparkflash.publish.store import parse_s3_url
from sparkflash.publish.upload import publish

BUCKET = "sparkflash-test"
DEVICE = "0123456789abcdef01234567"
MakeRelease = Callable[..., Path]


def _channel_key(s3_url: str) -> str:
    return parse_s3_url(s3_url).key("channels/tiny/stable.json")


def test_a_replayed_old_channel_record_is_refused(make_release: MakeRelease, signer: FileSigner, trust: TrustStore,
                                                  s3_url: str, s3_client: Any, tmp_path: Path) -> None:
    publish(make_release("1.0.0", {"a": b"\x01" * 4096}), s3_url, signer=signer, channel="stable")
    old = s3_client.get_object(Bucket=BUCKET, Key=_channel_key(s3_url))["Body"].read()
    publish(make_release("2.0.0", {"a": b"\x02" * 4096}), s3_url, signer=signer, channel="stable")
    got = fetch_release(f"{s3_url}/tiny", channel="stable", trust=trust, cache=tmp_path / "c")
    assert Manifest.from_bytes(got.read_bytes()).version == "2.0.0"
    s3_client.put_object(Bucket=BUCKET, Key=_channel_key(s3_url), Body=old)  # the attacker's replay
    with pytest.raises(VerifyError, match="rollback refused: channel record sequence 1"):
        fetch_release(f"{s3_url}/tiny", channel="stable", trust=trust, cache=tmp_path / "c")


def test_sequences_increase_with_each_move(make_release: MakeRelease, signer: FileSigner, s3_url: str) -> None:
    seqs = [publish(make_release(v, {"a": bytes([i]) * 4096}), s3_url, signer=signer, channel="stable").channel
            for i, v in enumerate(("1.0.0", "1.1.0", "1.2.0"))]
    assert [c["sequence"] for c in seqs if c] == [1, 2, 3]


def test_an_expired_channel_record_is_refused(make_release: MakeRelease, signer: FileSigner, trust: TrustStore,
                                              s3_url: str, s3_client: Any, tmp_path: Path) -> None:
    """A frozen channel: the attacker keeps serving the last good record; its expiry ends that."""
    dist = make_release("1.0.0", {"a": b"\x01" * 4096})
    publish(dist, s3_url, signer=signer, channel="stable")
    import hashlib

    from sparkflash.publish.channel import format_time

    sha = hashlib.sha256((dist / "manifest.json").read_bytes()).hexdigest()
    past = format_time(datetime.now(UTC) - timedelta(seconds=1))
    s3_client.put_object(Bucket=BUCKET, Key=_channel_key(s3_url),
                         Body=sign_channel(ChannelRecord("tiny", "stable", "1.0.0", sha, 9, past), signer))
    with pytest.raises(VerifyError, match="expired at"):
        fetch_release(f"{s3_url}/tiny", channel="stable", trust=trust, cache=tmp_path / "c")


def test_a_record_of_the_same_sequence_with_other_content_is_a_fork(tmp_path: Path) -> None:
    from sparkflash.publish.channel import ChannelMemory, format_time

    mem = ChannelMemory(tmp_path)
    future = format_time(datetime.now(UTC) + timedelta(days=1))
    mem.check_and_remember("bucket", "p", ChannelRecord("tiny", "stable", "2.0.0", "a" * 64, 5, future), "x")
    with pytest.raises(VerifyError, match="forked"):
        mem.check_and_remember("bucket", "p", ChannelRecord("tiny", "stable", "2.0.1", "b" * 64, 5, future), "x")
    mem.check_and_remember("bucket", "p", ChannelRecord("tiny", "stable", "2.0.0", "a" * 64, 5, future), "x")


@dataclass
class MemoryFlasher:
    """A device held in a dict; reports a release record like the device agent's `REC`."""

    record: tuple[str, str, str] | None = None
    via: str = "memory"
    flash: dict[int, bytes] = field(default_factory=dict)

    def device_id(self) -> str:
        return DEVICE

    def release_record(self) -> tuple[str, str, str] | None:
        return self.record

    def set_release_record(self, name: str, version: str, sha256: str) -> None:
        self.record = (name, version, sha256)

    def write_region(self, region: Region, data: bytes, progress: ProgressFn) -> WriteReport:
        self.flash[region.address] = data
        return WriteReport(bytes_sent=len(data))

    def device_digest(self, region: Region) -> tuple[int, str]:
        sha, crc = digests(self.flash.get(region.address, b""))
        return crc, sha

    def finish(self) -> None:
        pass


def test_the_device_release_record_refuses_a_downgrade_from_a_fresh_host(make_release: MakeRelease,
                                                                          trust: TrustStore) -> None:
    """Another SPARKFLASH_HOME (no ledger) still cannot install 1.0.0 over the device's 2.0.0."""
    rel = open_release(make_release("1.0.0", {"a": b"\x01" * 4096}) / "manifest.json", trust)
    dev = MemoryFlasher(record=("tiny", "2.0.0", "c" * 64))
    with pytest.raises(InputError, match="device 0123456789abcdef01234567 records as installed"):
        deploy_release(dev, rel, ledger=Ledger())
    assert dev.flash == {}
    assert deploy_release(dev, rel, ledger=Ledger(), allow_downgrade=True).ok
    assert dev.record is not None and dev.record[:2] == ("tiny", "1.0.0")  # written after every region verified


def test_an_adhoc_flash_never_resets_the_ledger(tmp_path: Path) -> None:
    led = Ledger()
    led.record(DEVICE, "tiny", "2.0.0")
    (tmp_path / "tiny.bin").write_bytes(b"\x07" * 4096)
    rel = adhoc_release(tmp_path / "tiny.bin", 0x80000, "spark-core", False, tmp_path / "store")
    assert deploy_release(MemoryFlasher(), rel, ledger=led, allow_downgrade=True).ok
    assert led.last(DEVICE, "tiny") == "2.0.0"
