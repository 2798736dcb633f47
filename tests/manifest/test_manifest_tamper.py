"""A signed release verifies; unsigned, unknown-key, missing-blob and mismatched-signature
releases do not. The exhaustive single-byte flips of manifest, signature and every blob are in
tests/tamper/, which also checks that nothing reaches the flash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.errors import VerifyError
from sparkflash.manifest.build import build_release
from sparkflash.manifest.keys import TrustStore, generate_key, load_signer
from sparkflash.manifest.release import MANIFEST_NAME, SIGNATURE_NAME, blob_key, open_release, sign_manifest

TINY = """
name: tiny
version: "1.0.0"
board: spark-core
regions:
  - name: fw
    kind: firmware
    source: {build: firmware}
  - name: key
    area: server_address
    source: {file: small.bin}
    pad_to: 0x80
"""



@pytest.fixture
def release(tmp_path: Path, write_yaml: Callable[[str], Path], firmware: Path,
            dev_key: tuple[Path, Path]) -> tuple[Path, TrustStore]:
    out = tmp_path / "dist"
    res = build_release(write_yaml(TINY), out, firmware=firmware)
    sign_manifest(res.manifest_path, load_signer(dev_key[0]))
    return out, TrustStore.from_paths([dev_key[1]])


def verify(out: Path, trust: TrustStore) -> None:
    rel = open_release(out / MANIFEST_NAME, trust)
    rel.verify_blobs()


def test_untouched_release_verifies(release: tuple[Path, TrustStore]) -> None:
    verify(*release)


def test_unsigned_release_is_refused(release: tuple[Path, TrustStore]) -> None:
    out, trust = release
    (out / SIGNATURE_NAME).unlink()
    with pytest.raises(VerifyError, match="unsigned release"):
        verify(out, trust)


def test_unknown_key_is_refused(release: tuple[Path, TrustStore], tmp_path: Path) -> None:
    out, _ = release
    other, _ = generate_key(tmp_path / "other" / "k.pem")
    with pytest.raises(VerifyError, match="signed by unknown key"):
        verify(out, TrustStore.from_paths([other]))


def test_missing_blob_is_refused(release: tuple[Path, TrustStore]) -> None:
    out, trust = release
    rel = open_release(out / MANIFEST_NAME, trust)
    (out / blob_key(rel.manifest.region("fw").sha256)).unlink()
    with pytest.raises(VerifyError, match="region 'fw': blob .* is missing"):
        rel.verify_blobs()


def test_signature_of_another_manifest_is_refused(release: tuple[Path, TrustStore], tmp_path: Path,
                                                  write_yaml: Callable[[str], Path], firmware: Path,
                                                  dev_key: tuple[Path, Path]) -> None:
    out, trust = release
    other = build_release(write_yaml(TINY.replace("1.0.0", "1.0.1"), "other.yaml"), tmp_path / "other", firmware=firmware)
    sign_manifest(other.manifest_path, load_signer(dev_key[0]))
    (out / SIGNATURE_NAME).write_bytes((tmp_path / "other" / SIGNATURE_NAME).read_bytes())
    with pytest.raises(VerifyError, match="signature does not match"):
        verify(out, trust)
