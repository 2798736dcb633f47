"""k-of-n signatures and key rotation through a TUF root of trust (issue #16, point 1).

Real moto S3 server, real Ed25519 keys, a real SoftHSM2 token for the HSM case. Each root
is built with `RootDir` (the `keys root` commands) and stored in the bucket's roots/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from softhsm_token import Token
from sparkflash.errors import VerifyError
from sparkflash.manifest.keys import FileSigner, Signer, generate_key, load_signer
from sparkflash.manifest.model import Manifest
from sparkflash.manifest.release import SIGNATURE_NAME, Signature, sign_manifest
from sparkflash.manifest.root_edit import RootDir, new_root
from sparkflash.manifest.trust import ROLE_MANIFEST, TrustRoot, TufSigner, verify_signatures
from sparkflash.publish.fetch import fetch_release
from sparkflash.publish.roots import RootMemory, push_root, root_key
from sparkflash.publish.store import ClientOptions, open_store, parse_s3_url
from sparkflash.publish.upload import publish

BUCKET = "sparkflash-test"
MakeRelease = Callable[..., Path]


@pytest.fixture
def keys(tmp_path: Path) -> Callable[[str], FileSigner]:
    """keys(name) -> a file signer, created on first use."""
    made: dict[str, FileSigner] = {}

    def get(name: str) -> FileSigner:
        if name not in made:
            generate_key(tmp_path / "k" / f"{name}.pem")
            made[name] = load_signer(tmp_path / "k" / f"{name}.pem")  # type: ignore[assignment]
        return made[name]

    return get


def _root_dir(tmp_path: Path, roles: dict[str, list[Signer]], thresholds: dict[str, int],
              sign_with: list[Signer]) -> RootDir:
    d = RootDir(tmp_path / "trust")
    d.create(new_root({r: [s.public_key for s in ks] for r, ks in roles.items()}, thresholds, 30))
    d.sign(sign_with)
    return d


def _push(s3_url: str, d: RootDir, version: int | None = None) -> None:
    loc = parse_s3_url(s3_url)
    store = open_store(loc.bucket, ClientOptions())
    for v in [version] if version is not None else d.versions():
        push_root(store, loc, d.file(v).read_bytes(), str(d.file(v)))


def _sign(dist: Path, *signers: Signer) -> None:
    sign_manifest(dist / "manifest.json", list(signers))


def _fetch(s3_url: str, trust: TrustRoot, tmp_path: Path, **kw: Any) -> Path:
    return fetch_release(f"{s3_url}/releases/tiny/1.0.0", trust=trust, cache=tmp_path / "cache", **kw)


def _two_of_two(keys: Callable[[str], FileSigner], make_release: MakeRelease, tmp_path: Path,
                s3_url: str | None = None) -> tuple[FileSigner, FileSigner, FileSigner, TrustRoot, Path]:
    """(m1, m2, c, trust, dist): a root whose manifest role needs both m1 and m2 (pushed to the
    bucket if given), and a release signed by m1 alone."""
    m1, m2, r, c = keys("m1"), keys("m2"), keys("r"), keys("c")
    d = _root_dir(tmp_path, {"root": [r], "manifest": [m1, m2], "channel": [c]}, {"manifest": 2}, [r])
    if s3_url is not None:
        _push(s3_url, d)
    dist = make_release("1.0.0", {"a": b"\x01" * 4096})
    _sign(dist, m1)
    return m1, m2, c, TrustRoot.from_file(d.file(1)), dist


def test_a_manifest_below_the_threshold_is_refused(make_release: MakeRelease, keys: Callable[[str], FileSigner],
                                                   s3_url: str, tmp_path: Path) -> None:
    m1, m2, c, trust, dist = _two_of_two(keys, make_release, tmp_path, s3_url)
    with pytest.raises(VerifyError, match="1 valid signature.* of the 2 the manifest role needs"):
        publish(dist, s3_url, trust=trust)
    publish(dist, s3_url, signer=m1)  # uploaded without the root's check: readers must refuse it themselves
    with pytest.raises(VerifyError, match="1 valid signature.* of the 2 the manifest role needs"):
        _fetch(s3_url, trust, tmp_path)
    sig = Signature.from_bytes((dist / SIGNATURE_NAME).read_bytes(), "sig")
    twice = Signature(sig.key_id, sig.signature, ((sig.key_id, sig.signature),))  # one key listed twice
    with pytest.raises(VerifyError, match="1 valid signature"):
        verify_signatures(trust, ROLE_MANIFEST, (dist / "manifest.json").read_bytes(), twice.all, "x", "manifest")


def test_two_of_two_manifest_signatures_deploy(make_release: MakeRelease, keys: Callable[[str], FileSigner],
                                               s3_url: str, tmp_path: Path) -> None:
    m1, m2, c, trust, dist = _two_of_two(keys, make_release, tmp_path, s3_url)
    sign_manifest(dist / "manifest.json", m2, add=True)  # the co-signer adds theirs
    assert len(Signature.from_bytes((dist / SIGNATURE_NAME).read_bytes(), "sig").all) == 2
    publish(dist, s3_url, signer=c, trust=trust, channel="stable")
    got = fetch_release(f"{s3_url}/tiny", channel="stable", trust=trust, cache=tmp_path / "cache")
    assert Manifest.from_bytes(got.read_bytes()).version == "1.0.0"


def test_a_manifest_key_cannot_sign_a_channel_record(make_release: MakeRelease, keys: Callable[[str], FileSigner],
                                                     s3_url: str, tmp_path: Path) -> None:
    m, r, c = keys("m"), keys("r"), keys("c")
    d = _root_dir(tmp_path, {"root": [r], "manifest": [m], "channel": [c]}, {}, [r])
    _push(s3_url, d)
    trust = TrustRoot.from_file(d.file(1))
    dist = make_release("1.0.0", {"a": b"\x01" * 4096})
    _sign(dist, m)
    with pytest.raises(VerifyError, match=r"channel record has 0 valid signature.*is not a channel key"):
        publish(dist, s3_url, signer=m, trust=trust, channel="stable")  # refused before the record is stored
    publish(dist, s3_url, signer=m, channel="stable")  # a publisher without the root stores it anyway
    with pytest.raises(VerifyError, match=r"channel record has 0 valid signature.*is not a channel key"):
        fetch_release(f"{s3_url}/tiny", channel="stable", trust=trust, cache=tmp_path / "cache")
    # ... and a channel key cannot sign a manifest
    _sign(dist, c)
    with pytest.raises(VerifyError, match="is not a manifest key"):
        publish(dist, s3_url, trust=trust)


def _rotate(d: RootDir, drop: tuple[str, Signer] | None, add: tuple[str, Signer] | None,
            sign_with: list[Signer], threshold: int | None = None) -> int:
    if add is not None:
        d.add_key(add[0], add[1].public_key, threshold, 30)
    if drop is not None:
        d.remove_key(drop[0], drop[1].key_id, threshold, 30)
    d.sign(sign_with)
    return d.versions()[-1]


def test_a_rotation_chain_is_walked_from_the_pinned_root(make_release: MakeRelease, keys: Callable[[str], FileSigner],
                                                        s3_url: str, tmp_path: Path) -> None:
    r1, r2, r3, m1, m2, c = (keys(n) for n in ("r1", "r2", "r3", "m1", "m2", "c"))
    d = _root_dir(tmp_path, {"root": [r1, r2], "manifest": [m1], "channel": [c]}, {"root": 2}, [r1, r2])
    pinned = TrustRoot.from_file(d.file(1))  # what the host was given out of band
    assert _rotate(d, ("root", r1), ("root", r3), [r1, r2, r3]) == 2  # v2: root keys r2, r3 (2 of 2)
    assert _rotate(d, ("manifest", m1), ("manifest", m2), [r2, r3]) == 3  # v3: manifest key m1 -> m2
    _push(s3_url, d)
    dist = make_release("1.0.0", {"a": b"\x01" * 4096})
    _sign(dist, m2)
    publish(dist, s3_url, trust=pinned)  # the publisher also walks up to v3
    assert Manifest.from_bytes(_fetch(s3_url, pinned, tmp_path).read_bytes()).version == "1.0.0"
    remembered = RootMemory().load(parse_s3_url(s3_url))
    assert remembered is not None and remembered.version == 3


def test_a_root_signed_only_by_its_new_keys_is_refused(make_release: MakeRelease, keys: Callable[[str], FileSigner],
                                                       s3_url: str, s3_client: Any, tmp_path: Path) -> None:
    r1, evil, m, c = keys("r1"), keys("evil"), keys("m"), keys("c")
    d = _root_dir(tmp_path, {"root": [r1], "manifest": [m], "channel": [c]}, {}, [r1])
    _push(s3_url, d)
    pinned = TrustRoot.from_file(d.file(1))
    # The attacker's v2: their own root and manifest keys, signed (to threshold) by those only
    forged = new_root({"root": [evil.public_key], "manifest": [evil.public_key], "channel": [evil.public_key]}, {}, 30)
    forged.signed.version = 2
    forged.sign(TufSigner(evil))
    with pytest.raises(VerifyError, match="signed by 0 of the 1 root keys of v1"):
        push_root(open_store(BUCKET, ClientOptions()), parse_s3_url(s3_url), forged.to_bytes(), "forged")
    s3_client.put_object(Bucket=BUCKET, Key=root_key(parse_s3_url(s3_url), 2), Body=forged.to_bytes())
    dist = make_release("1.0.0", {"a": b"\x01" * 4096})
    _sign(dist, evil)
    publish(dist, s3_url, signer=evil)
    with pytest.raises(VerifyError, match="signed by 0 of the 1 root keys of v1"):
        _fetch(s3_url, pinned, tmp_path)


def test_a_revoked_key_no_longer_counts_and_the_bucket_cannot_undo_it(
        make_release: MakeRelease, keys: Callable[[str], FileSigner], s3_url: str, s3_client: Any,
        tmp_path: Path) -> None:
    r, m1, m2, c = keys("r"), keys("m1"), keys("m2"), keys("c")
    d = _root_dir(tmp_path, {"root": [r], "manifest": [m1, m2], "channel": [c]}, {}, [r])
    _push(s3_url, d)
    pinned = TrustRoot.from_file(d.file(1))
    dist = make_release("1.0.0", {"a": b"\x01" * 4096})
    _sign(dist, m1)
    publish(dist, s3_url, trust=pinned)
    _fetch(s3_url, pinned, tmp_path)  # m1 is good under v1
    _rotate(d, ("manifest", m1), None, [r])  # v2: m1 revoked (lost laptop)
    _push(s3_url, d, 2)
    with pytest.raises(VerifyError, match=r"0 valid signature.*is not a manifest key of this root \(another role's, "
                                          r"or revoked\)"):
        _fetch(s3_url, pinned, tmp_path)
    # The attacker removes v2 from the bucket: this host remembers it, so m1 stays revoked here
    s3_client.delete_object(Bucket=BUCKET, Key=root_key(parse_s3_url(s3_url), 2))
    with pytest.raises(VerifyError, match="is not a manifest key of this root"):
        _fetch(s3_url, pinned, tmp_path)


def test_a_replayed_older_root_is_refused(make_release: MakeRelease, keys: Callable[[str], FileSigner],
                                          s3_url: str, s3_client: Any, tmp_path: Path) -> None:
    r, m1, m2, c = keys("r"), keys("m1"), keys("m2"), keys("c")
    d = _root_dir(tmp_path, {"root": [r], "manifest": [m1, m2], "channel": [c]}, {}, [r])
    _rotate(d, ("manifest", m1), None, [r])  # v2 revokes m1
    _push(s3_url, d)
    pinned = TrustRoot.from_file(d.file(1))
    dist = make_release("1.0.0", {"a": b"\x01" * 4096})
    _sign(dist, m2)
    publish(dist, s3_url, trust=pinned)
    _fetch(s3_url, pinned, tmp_path)  # this host now trusts v2
    # v1 (signed, valid, with m1) replayed as the "next" version
    s3_client.put_object(Bucket=BUCKET, Key=root_key(parse_s3_url(s3_url), 3), Body=d.file(1).read_bytes())
    with pytest.raises(VerifyError, match="rollback refused: holds root v1, expected v3"):
        _fetch(s3_url, pinned, tmp_path)


def test_an_expired_newest_root_is_refused(make_release: MakeRelease, keys: Callable[[str], FileSigner],
                                           s3_url: str, s3_client: Any, tmp_path: Path) -> None:
    r, m, c = keys("r"), keys("m"), keys("c")
    d = _root_dir(tmp_path, {"root": [r], "manifest": [m], "channel": [c]}, {}, [r])
    _push(s3_url, d)
    pinned = TrustRoot.from_file(d.file(1))
    dist = make_release("1.0.0", {"a": b"\x01" * 4096})
    _sign(dist, m)
    publish(dist, s3_url, trust=pinned)
    _fetch(s3_url, pinned, tmp_path)
    # A correctly signed v2 that has expired (the owner stopped renewing; or a frozen root served forever)
    v2 = d.newest()
    v2.signed.version = 2
    v2.signed.expires = (datetime.now(UTC) - timedelta(seconds=1)).replace(microsecond=0)
    v2.sign(TufSigner(r))
    s3_client.put_object(Bucket=BUCKET, Key=root_key(parse_s3_url(s3_url), 2), Body=v2.to_bytes())
    with pytest.raises(VerifyError, match="root v2 expired at"):
        _fetch(s3_url, pinned, tmp_path)


def test_an_hsm_key_is_one_of_two_of_three(make_release: MakeRelease, keys: Callable[[str], FileSigner],
                                           token: Token, s3_url: str, tmp_path: Path) -> None:
    hsm = load_signer(token.uri())
    m1, m3, c = keys("m1"), keys("m3"), keys("c")
    d = _root_dir(tmp_path, {"root": [hsm, m1, m3], "manifest": [m1, hsm, m3], "channel": [c]},
                  {"root": 2, "manifest": 2}, [hsm, m1])  # the root itself: 2 of 3, one on the token
    _push(s3_url, d)
    trust = TrustRoot.from_file(d.file(1))
    dist = make_release("1.0.0", {"a": b"\x01" * 4096})
    _sign(dist, hsm)
    with pytest.raises(VerifyError, match="1 valid signature.* of the 2 the manifest role needs"):
        publish(dist, s3_url, trust=trust)
    sign_manifest(dist / "manifest.json", m3, add=True)
    publish(dist, s3_url, signer=c, trust=trust, channel="stable")
    got = fetch_release(f"{s3_url}/tiny", channel="stable", trust=trust, cache=tmp_path / "cache")
    assert Manifest.from_bytes(got.read_bytes()).version == "1.0.0"
    assert verify_signatures(trust, ROLE_MANIFEST, got.read_bytes(),
                             Signature.from_bytes((got.parent / SIGNATURE_NAME).read_bytes(), "s").all,
                             "x", "manifest") == sorted([hsm.key_id, m3.key_id])


def test_a_root_whose_key_id_names_another_key_is_refused(keys: Callable[[str], FileSigner], tmp_path: Path) -> None:
    r, m, c = keys("r"), keys("m"), keys("c")
    d = _root_dir(tmp_path, {"root": [r], "manifest": [m], "channel": [c]}, {}, [r])
    doc = json.loads(d.file(1).read_bytes())
    doc["signed"]["keys"][m.key_id]["keyval"]["public"] = doc["signed"]["keys"][c.key_id]["keyval"]["public"]
    with pytest.raises(VerifyError, match="the key id is not the sha256 of its public key"):
        TrustRoot.from_bytes(json.dumps(doc).encode(), "root.json")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparkflash", *args], capture_output=True, text=True, timeout=120,
                          env=os.environ, cwd=cwd, check=False)


def test_the_cli_sets_up_two_of_three_and_rotates_a_key(make_release: MakeRelease, s3_url: str,
                                                        tmp_path: Path) -> None:
    """The owner's steps in docs/publish.md, through the command line."""
    for k in ("r1", "r2", "r3", "m1", "m2", "m3", "c1"):
        assert _cli("keys", "generate", "-o", f"{k}.pem", cwd=tmp_path).returncode == 0
    init = ["keys", "root", "init", "trust", "--root-threshold", "2", "--manifest-threshold", "2",
            "--channel-key", "c1.pub.pem"]
    for k in ("1", "2", "3"):
        init += ["--root-key", f"r{k}.pub.pem", "--manifest-key", f"m{k}.pub.pem"]
    assert _cli(*init, cwd=tmp_path).returncode == 0
    r = _cli("keys", "root", "sign", "trust", "--key", "r1.pem", "--json", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["complete"] is False, r.stdout + r.stderr
    r = _cli("keys", "root", "sign", "trust", "--key", "r2.pem", "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["complete"] is True
    r = _cli("keys", "root", "push", "trust", s3_url, cwd=tmp_path)
    assert r.returncode == 0 and "root v1: uploaded" in r.stdout, r.stderr
    dist = make_release("1.0.0", {"a": b"\x01" * 4096})
    assert _cli("manifest", "sign", str(dist), "--key", "m1.pem", "--key", "m2.pem", cwd=tmp_path).returncode == 0
    r = _cli("publish", str(dist), s3_url, "--trust", "trust/1.root.json", "--key", "c1.pem", "--channel", "stable",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # rotate: m1 leaves (revoked), signed by 2 of v1's root keys (also 2 of v2's: the same)
    assert _cli("keys", "root", "remove-key", "trust", "--role", "manifest", "m1.pub.pem", cwd=tmp_path).returncode == 0
    r = _cli("keys", "root", "sign", "trust", "--key", "r2.pem", "--key", "r3.pem", "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["version"] == 2 and json.loads(r.stdout)["complete"] is True
    assert "root v2: uploaded" in _cli("keys", "root", "push", "trust", s3_url, cwd=tmp_path).stdout
    r = _cli("manifest", "verify", str(dist), "--trust", "trust/2.root.json", cwd=tmp_path)
    assert r.returncode == 3 and "is not a manifest key of this root" in r.stderr, r.stderr
    r = _cli("keys", "root", "show", "trust", "--json", cwd=tmp_path)
    shown = json.loads(r.stdout)["versions"]
    assert [v["version"] for v in shown] == [1, 2] and shown[1]["roles"]["manifest"]["threshold"] == 2
    assert len(shown[1]["roles"]["manifest"]["keys"]) == 2


def test_the_cloud_server_verifies_through_the_same_root(make_release: MakeRelease, keys: Callable[[str], FileSigner],
                                                         tmp_path: Path) -> None:
    """`cloud serve --trust ROOT.root.json`: a posted release needs the manifest role's threshold too."""
    from sparkflash.cloud.releases import BlobStore, release_from_post

    m1, m2, _, trust, dist = _two_of_two(keys, make_release, tmp_path)
    raw = (dist / "manifest.json").read_text()
    store = BlobStore(tmp_path / "server-blobs")
    with pytest.raises(VerifyError, match="1 valid signature.* of the 2 the manifest role needs"):
        release_from_post(raw, (dist / SIGNATURE_NAME).read_text(), store, trust, False)
    _sign(dist, m1, m2)
    rel = release_from_post(raw, (dist / SIGNATURE_NAME).read_text(), store, trust, False)
    assert rel.signature is not None and len(rel.signature.all) == 2


def test_a_co_signature_added_after_publishing_reaches_the_bucket(
        make_release: MakeRelease, keys: Callable[[str], FileSigner], s3_url: str, tmp_path: Path) -> None:
    m1, m2, c, trust, dist = _two_of_two(keys, make_release, tmp_path, s3_url)
    assert publish(dist, s3_url, signer=m1).manifest_status == "created"
    with pytest.raises(VerifyError, match="1 valid signature"):
        _fetch(s3_url, trust, tmp_path)
    sign_manifest(dist / "manifest.json", m2, add=True)
    assert publish(dist, s3_url, trust=trust).manifest_status == "signatures-added"
    assert Manifest.from_bytes(_fetch(s3_url, trust, tmp_path).read_bytes()).version == "1.0.0"
    _sign(dist, m2)  # fewer signatures than stored: never replaces them
    assert publish(dist, s3_url, signer=m2).manifest_status == "unchanged"
    _fetch(s3_url, trust, tmp_path)
