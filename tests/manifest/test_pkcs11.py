"""Signing with an Ed25519 key on a real SoftHSM2 token (PKCS#11, CKM_EDDSA), created per test.

The token lives in the test's temp dir (SOFTHSM2_CONF); the key is generated on the token
and never exists as a file. Signatures must verify exactly like a file key's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from softhsm_token import PIN, Token
from sparkflash.errors import InputError
from sparkflash.manifest.keys import TrustStore, load_signer
from sparkflash.manifest.pkcs11_key import parse_pkcs11_uri
from sparkflash.manifest.release import open_release


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sparkflash", *args], capture_output=True, text=True, timeout=120,
                          env=os.environ, check=False)


def test_parse_rfc7512_uri() -> None:
    u = parse_pkcs11_uri("pkcs11:token=My%20Token;object=rel;id=%01%02?module-path=/m.so&pin-value=1%262")
    assert u.path == {"token": b"My Token", "object": b"rel", "id": b"\x01\x02"}
    assert u.query == {"module-path": b"/m.so", "pin-value": b"1&2"}
    for bad in ("pkcs11:token=a", "pkcs11:object=a;bogus=1", "pkcs11:object=a;object=b", "pkcs11:object=a?x=1"):
        with pytest.raises(InputError):
            parse_pkcs11_uri(bad)


def test_a_token_key_signs_a_release_that_verifies(token: Token, tmp_path: Path, firmware: Path) -> None:
    yaml = tmp_path / "release.yaml"
    (tmp_path / "a.bin").write_bytes(bytes(range(256)) * 16)
    yaml.write_text('name: tiny\nversion: "1.0.0"\nboard: spark-core\nregions:\n'
                    "  - name: a\n    memory: external\n    address: 0x80000\n    source: {file: a.bin}\n")
    r = _cli("keys", "export-public", token.uri(), str(tmp_path / "hsm.pub.pem"))
    assert r.returncode == 0, r.stderr
    r = _cli("manifest", "build", str(yaml), "--out", str(tmp_path / "dist"), "--key", token.uri())
    assert r.returncode == 0, r.stderr
    rel = open_release(tmp_path / "dist" / "manifest.json", TrustStore.from_paths([tmp_path / "hsm.pub.pem"]))
    assert rel.signature is not None and rel.signature.key_id == load_signer(token.uri()).key_id
    r = _cli("manifest", "verify", str(tmp_path / "dist"), "--trust", str(tmp_path / "hsm.pub.pem"))
    assert r.returncode == 0, r.stderr


def test_token_signatures_equal_the_same_key_elsewhere(token: Token) -> None:
    """Pure Ed25519 is deterministic: signing twice gives the same bytes, and they verify."""
    s = load_signer(token.uri())
    a, b = s.sign(b"payload"), s.sign(b"payload")
    assert a == b and len(a) == 64
    s.public_key.verify(a, b"payload")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("change", "match"), [
    (lambda t: t.uri(obj="nope"), "found 0 private"),
    (lambda t: t.uri().replace("sparkflash-test", "other-token"), "cannot open the PKCS#11 key"),
])
def test_a_bad_uri_or_pin_is_one_clear_error(token: Token, change: object, match: str) -> None:
    uri = change(token)  # type: ignore[operator]
    with pytest.raises(InputError, match=match) as e:
        load_signer(uri)
    assert PIN not in str(e.value) and "0000" not in str(e.value)  # never print the PIN


def test_a_wrong_pin_is_one_clear_line_without_the_pin(token: Token, tmp_path: Path) -> None:
    """In a fresh process (a login is per process: in-process signers share it)."""
    r = _cli("keys", "export-public", token.uri().replace(PIN, "0000"), str(tmp_path / "x.pub.pem"))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "cannot open the PKCS#11 key" in lines[0], r.stderr
    assert "0000" not in r.stderr and "Traceback" not in r.stderr
