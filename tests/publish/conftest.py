"""A real S3 server (`sparkflash s3-local`, moto server mode) in a subprocess, and tiny signed releases."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from softhsm_token import token  # noqa: F401  (the session SoftHSM2 token fixture)
from sparkflash.manifest.build import build_release
from sparkflash.manifest.keys import FileSigner, TrustStore, generate_key, load_signer
from sparkflash.manifest.release import sign_manifest
from sparkflash.publish.local_server import LocalS3Process

BUCKET = "sparkflash-test"
PART = 256 * 1024  # smallest multipart part the session server accepts (AWS: 5 MiB)

MakeRelease = Callable[..., Path]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Process]:
    """One server per test session, on a free loopback port; parts may be small (a Core blob is <= 1.5 MiB)."""
    with LocalS3Process(buckets=[BUCKET], env={"S3_UPLOAD_PART_MIN_SIZE": str(PART)}) as server:
        yield server


def _point_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Standard AWS configuration, aimed at the local server, never at ~/.aws."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture
def s3_url(s3_server: LocalS3Process, monkeypatch: pytest.MonkeyPatch) -> str:
    """s3://BUCKET/<fresh prefix>: tests share the server, never each other's objects."""
    _point_at(monkeypatch, s3_server.endpoint)
    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def aim_s3(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """aim_s3(endpoint): point AWS_ENDPOINT_URL (and dummy credentials) at another local server."""
    return lambda endpoint: _point_at(monkeypatch, endpoint)


@pytest.fixture
def s3_client(s3_server: LocalS3Process, s3_url: str) -> object:
    import boto3

    return boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def signer(tmp_path: Path) -> FileSigner:
    generate_key(tmp_path / "keys" / "release.pem")
    return load_signer(tmp_path / "keys" / "release.pem")


@pytest.fixture
def trust(tmp_path: Path, signer: FileSigner) -> TrustStore:
    return TrustStore.from_paths([tmp_path / "keys" / "release.pub.pem"])


@pytest.fixture
def make_release(tmp_path: Path, signer: FileSigner) -> MakeRelease:
    """make_release(version, {"a": bytes, ...}) -> a signed release dir; regions 64 KiB apart in the user area."""

    def make(version: str, blobs: dict[str, bytes], name: str = "tiny") -> Path:
        src = tmp_path / f"src-{name}-{version}"
        src.mkdir(parents=True, exist_ok=True)
        lines = [f"name: {name}", f'version: "{version}"', "board: spark-core", "regions:"]
        for i, (region, data) in enumerate(blobs.items()):
            (src / f"{region}.bin").write_bytes(data)
            lines += [f"  - name: {region}", "    memory: external", f"    address: 0x{0x80000 + i * 0x10000:x}",
                      f"    source: {{file: {region}.bin}}"]
        (src / "release.yaml").write_text("\n".join(lines) + "\n")
        out = tmp_path / f"dist-{name}-{version}"
        res = build_release(src / "release.yaml", out)
        sign_manifest(res.manifest_path, signer)
        return out

    return make
