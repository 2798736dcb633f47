"""Exit codes by cause, end to end against real parts (a virtual Core, moto's S3 server,
our cloud server): each row is one way to fail and the code it must give."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkflash.cli import main


@pytest.fixture
def s3() -> Iterator[str]:
    from sparkflash.publish.local_server import LocalS3

    server = LocalS3("127.0.0.1", 0, None, False).start(["rel"])
    try:
        yield server.endpoint
    finally:
        server.stop()


TOKEN = "test-admin-token"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "server.der.admin-token"
    path.write_text(TOKEN)
    return path


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[str]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from sparkflash.cloud import CloudServer, DeviceRegistry, ServerThread

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    srv = CloudServer(key, DeviceRegistry(tmp_path / "devices"), host="127.0.0.1", port=0, admin=("127.0.0.1", 0),
                      token=TOKEN)
    with ServerThread(srv):
        assert srv.admin_addr is not None
        host, port = srv.admin_addr[:2]
        srv.registry.register("0123456789abcdef01234567", _device_pem())
        yield f"http://{host}:{port}"


def _device_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    k = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    lines = capsys.readouterr().out.splitlines()
    doc = json.loads(lines[-1])
    assert doc["event"] == "result" and doc.get("exit_code", 0) == code, doc
    return code, doc


def test_success_is_0(signed_example: tuple[Path, Path], virtual_core: object, core_dir: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    manifest, pub = signed_example
    code, doc = run(capsys, "deploy", str(manifest), "--trust", str(pub), "--via", "dfu", "-d", f"virtual:{core_dir}")
    assert (code, doc["ok"]) == (0, True)


def test_tampered_blob_is_3(signed_example: tuple[Path, Path], tmp_path: Path, virtual_core: object, core_dir: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    manifest, pub = signed_example
    rel = tmp_path / "tampered"
    shutil.copytree(manifest.parent, rel)
    blob = next(p for p in (rel / "blobs").rglob("*") if p.is_file())
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    blob.write_bytes(bytes(raw))
    code, doc = run(capsys, "deploy", str(rel / "manifest.json"), "--trust", str(pub), "--via", "dfu",
                    "-d", f"virtual:{core_dir}")
    assert code == 3, doc


def test_no_such_dfu_device_is_4(signed_example: tuple[Path, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    manifest, pub = signed_example
    code, doc = run(capsys, "deploy", str(manifest), "--trust", str(pub), "--via", "dfu", "-d", f"virtual:{tmp_path}/none")
    assert code == 4, doc


def test_s3_mistakes(signed_example: tuple[Path, Path], tmp_path: Path, s3: str,
                     capsys: pytest.CaptureFixture[str]) -> None:
    manifest, pub = signed_example
    key = pub.with_name("release.pem")
    # a bucket that does not exist: the store says no -> 6
    code, doc = run(capsys, "publish", str(manifest.parent), "s3://no-such-bucket/p", "--key", str(key),
                    "--endpoint-url", s3)
    assert code == 6, doc
    code, doc = run(capsys, "publish", str(manifest.parent), "s3://rel/p", "--key", str(key), "--channel", "stable",
                    "--endpoint-url", s3)
    assert code == 0 and doc["ok"] is True, doc
    # a mistyped channel is bad input, not an S3 failure -> 2, naming the channels there are
    code, doc = run(capsys, "deploy", "s3://rel/p/example", "--channel", "stabel", "--trust", str(pub),
                    "--via", "dfu", "-d", f"virtual:{tmp_path}/core", "--endpoint-url", s3)
    assert code == 2 and "stable" in str(doc["error"]), doc


def test_ota_device_unknown_is_2_and_offline_is_4_at_once(example_release: Path, cloud: str, token_file: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI asks the cloud first: the reason is its own message, not the deploy's connect wait."""
    base = ["deploy", str(example_release), "--no-verify-signature", "--via", "ota", "--cloud", cloud,
            "--cloud-token", str(token_file)]
    code, doc = run(capsys, *base, "-d", "ffffffffffffffffffffffff")
    assert code == 2 and "not registered" in str(doc["error"]), doc
    code, doc = run(capsys, *base, "-d", "0123456789abcdef01234567", "--online-timeout", "0")
    assert code == 4 and "not connected" in str(doc["error"]), doc


def test_a_cloud_that_is_not_ours_is_a_protocol_error_5(example_release: Path, s3: str, token_file: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """An HTTP server that does not speak the admin API (here: the S3 server) breaks the protocol."""
    code, doc = run(capsys, "deploy", str(example_release), "--no-verify-signature", "--via", "ota", "--cloud", s3,
                    "--cloud-token", str(token_file), "-d", "0123456789abcdef01234567")
    assert code == 5 and "no device list" in str(doc["error"]), doc
