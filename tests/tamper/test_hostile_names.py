"""Names from outside never become host paths or S3 key segments (issue #16, point 3).

Each case is one the issue found: a device id, a version, a signed release name or a
trailing newline that used to end up as a path or a key with `..` in it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from sparkflash import names
from sparkflash.boards import load_board
from sparkflash.deploy.run import Ledger
from sparkflash.errors import InputError, RemoteProtocolError, VerifyError
from sparkflash.manifest.model import Manifest, parse_version
from sparkflash.manifest.release import blob_key
from sparkflash.publish.channel import ChannelRecord, open_channel, sign_channel
from sparkflash.publish.fetch import parse_release_url
from sparkflash.publish.store import S3Url, parse_s3_url, release_keys

HOSTILE_IDS = ["../../../../PWNED", "x/y/z", "pwned", "../pwned-by-serial", "0123456789abcdef01234567\n",
               "0123456789ABCDEF01234567", "", "a" * 300]


def _all_files(root: Path) -> list[Path]:
    return list(root.rglob("*"))


@pytest.mark.parametrize("device", HOSTILE_IDS)
def test_a_hostile_device_id_never_becomes_a_path(tmp_path: Path, device: str) -> None:
    home = tmp_path / "deep" / "er" / "home"
    home.mkdir(parents=True)
    led = Ledger(home)
    led.record(device, "rel", "1.0.0")
    assert led.last(device, "rel") == "1.0.0"  # the downgrade check still works for it
    files = [p for p in _all_files(tmp_path) if p.is_file()]
    assert [p.parent for p in files] == [home / "devices"], files  # one file, in devices/
    dirs = {p for p in _all_files(tmp_path) if p.is_dir()}
    assert dirs == {tmp_path / "deep", tmp_path / "deep" / "er", home, home / "devices"}, dirs  # none made
    name = files[0].name
    assert names.valid("device id", name.removesuffix(".json")) or (
        name.startswith("other-") and names.valid("device id", name.removeprefix("other-").removesuffix(".json")))
    assert "PWNED" not in name and "pwned" not in name


def test_a_valid_device_id_names_its_ledger_file(tmp_path: Path) -> None:
    Ledger(tmp_path).record("0123456789abcdef01234567", "rel", "1.0.0")
    assert (tmp_path / "devices" / "0123456789abcdef01234567.json").is_file()


def _fake_core(master: int, reply: bytes, stop: threading.Event) -> None:
    """The device end of a pty: answers the stock key `i` with `reply`."""
    while not stop.is_set():
        try:
            chunk = os.read(master, 64)
        except OSError:
            return
        if b"i" in chunk:
            os.write(master, reply)


@pytest.mark.parametrize("reply", [b"Your core id is pwned\r\nsparkflash-agent 1\r\n",
                                   b"Your core id is ../../pwned-by-serial\r\n",
                                   b"Your core id is x/y/z\r\nsparkflash-agent 1\r\n"])
def test_a_serial_id_reply_that_is_not_a_core_id_is_refused(tmp_path: Path, reply: bytes) -> None:
    import tty

    from sparkflash.deploy.serial_ymodem import SerialFlasher

    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()
    t = threading.Thread(target=_fake_core, args=(master, reply, stop), daemon=True)
    t.start()
    try:
        with pytest.raises(RemoteProtocolError, match="not a 24-hex-digit core id"):
            SerialFlasher(os.ttyname(slave), load_board("spark-core"), timeout=2.0)
    finally:
        stop.set()
        os.close(slave)
        os.close(master)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", ["1.0.0+x/../../other/9.9.9", "1.0.0\n", "1.0.0+", "01.0.0", "1.0.0-01",
                                     "1.0.0+a..b", "1.0.0+" + "a" * 80, "１.0.0", "1.0.0+ä"])
def test_versions_are_strict_semver(version: str) -> None:
    with pytest.raises(InputError, match="semver"):
        parse_version(version)


@pytest.mark.parametrize("version", ["1.0.0", "1.0.0-rc.1", "1.0.0+build.7", "1.0.0-rc.1+sha.0a1b2c", "10.20.30"])
def test_good_versions_still_parse(version: str) -> None:
    parse_version(version)


def test_release_keys_refuse_a_version_with_dot_dot() -> None:
    with pytest.raises(InputError):
        release_keys(S3Url("bucket", "p"), "tiny", "1.0.0+x/../../other/9.9.9")


def test_trailing_newline_fails_every_rule() -> None:
    for kind in names.RULES:
        assert not names.valid(kind, {"device id": "0" * 24, "digest": "0" * 64, "key id": "0" * 64,
                                      "version": "1.0.0", "bucket": "abc"}.get(kind, "abc") + "\n"), kind


def _manifest_json(**override: object) -> bytes:
    region = {"name": "a", "memory": "external", "address": 0x80000, "size": 4096, "sha256": "0" * 64,
              "crc32": 0, "erase": [0x80000], "kind": "data", "allow_protected": False}
    region.update(override.pop("region", {}))  # type: ignore[call-overload]
    doc = {"format": "sparkflash-manifest/1", "name": "tiny", "version": "1.0.0", "board": "spark-core",
           "meta": {}, "regions": [region]}
    doc.update(override)
    return (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode()


@pytest.mark.parametrize("override", [
    {"name": "../../../escape"}, {"name": "tiny\n"}, {"version": "1.0.0+x/../../y"}, {"board": "../b"},
    {"region": {"name": "../a"}}, {"region": {"sha256": "../../" + "0" * 58}}, {"region": {"sha256": "A" * 64}},
    {"region": {"address": "HUGE"}}, {"region": {"address": -1}}, {"region": {"size": "4096"}},
    {"region": {"memory": "../x"}}, {"regions": []},
])
def test_a_signed_manifest_with_a_hostile_name_is_refused(override: dict[str, object]) -> None:
    raw = _manifest_json(**override).replace(b'"HUGE"', b"9" * 5000)  # a 5,000-digit address
    with pytest.raises(InputError):
        Manifest.from_bytes(raw, "m.json")


def test_the_good_manifest_of_these_cases_parses() -> None:
    assert Manifest.from_bytes(_manifest_json(), "m.json").name == "tiny"


def test_blob_keys_only_from_digests() -> None:
    assert blob_key("ab" * 32) == f"blobs/sha256/{'ab' * 32}"
    with pytest.raises(InputError):
        blob_key("../../../etc/passwd")


@pytest.mark.parametrize("url", ["s3://b/p/releases/tiny/1.0.0+x/../../other/9.9.9",
                                 "s3://bucket/p/releases/../../escape/1.0.0",
                                 "s3://bucket/p/releases/tiny/1.0.0%0A", "s3://bucket/p/releases/tiny/01.0.0",
                                 "s3://UPPER/p/releases/tiny/1.0.0", "s3://bucket/p/releases/tiny/1.0.0?x=1"])
def test_release_urls_with_hostile_parts_are_refused(url: str) -> None:
    with pytest.raises(InputError):
        parse_release_url(url)


def test_bucket_names_follow_s3_rules() -> None:
    for bad in ("b", "ab", "Bucket", "a..b", "-ab", "192.168.0.1", "a" * 64):
        with pytest.raises(InputError):
            parse_s3_url(f"s3://{bad}/p")
    assert parse_s3_url("s3://my-bucket.1/p").bucket == "my-bucket.1"


def test_a_channel_record_with_hostile_names_is_refused(tmp_path: Path) -> None:
    from sparkflash.manifest.keys import generate_key, load_signer

    generate_key(tmp_path / "k.pem")
    s = load_signer(tmp_path / "k.pem")
    for rec in (ChannelRecord("../../../escape", "stable", "1.0.0", "0" * 64),
                ChannelRecord("tiny", "../stable", "1.0.0", "0" * 64),
                ChannelRecord("tiny", "stable", "1.0.0+x/../../y", "0" * 64),
                ChannelRecord("tiny", "stable", "1.0.0", "../" * 21 + "0")):
        with pytest.raises(VerifyError, match="malformed channel record"):
            open_channel(sign_channel(rec, s), "c.json", None)


@pytest.mark.parametrize(("key", "value"), [("name", '"tiny\\n"'), ("board", '"../../etc/x"'), ("board", '"spark-core\\n"')])
def test_release_yaml_names_full_match(key: str, value: str) -> None:
    from sparkflash.manifest.load import loads_yaml
    from sparkflash.manifest.spec import parse_release

    fields = {"name": "tiny", "version": '"1.0.0"', "board": "spark-core", key: value}
    text = "".join(f"{k}: {v}\n" for k, v in fields.items())
    text += "regions:\n  - name: a\n    memory: external\n    address: 0x80000\n    source: {file: a.bin}\n"
    with pytest.raises(InputError, match=f"{key} .* must be"):
        parse_release(loads_yaml(text, "r.yaml"), "r.yaml")
