"""The RSA handshake, both sides, against the layout facts of §2-3 and each other."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sparkflash.errors import RemoteProtocolError
from sparkflash.protocols import cloud_handshake as hs
from sparkflash.protocols import rsa_raw


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (rsa.generate_private_key(public_exponent=65537, key_size=2048),
            rsa.generate_private_key(public_exponent=65537, key_size=1024))


def test_key_layouts_the_core_reads_at_fixed_offsets(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    server, device = keys
    spki = hs.server_public_der(server.public_key())
    assert len(spki) == 294 and spki[33:289] == server.public_key().public_numbers().n.to_bytes(256, "big")
    assert spki[289:] == bytes.fromhex("0203010001")
    der = device.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())
    assert der[4:11] == bytes.fromhex("02010002818100")
    pub162 = hs.device_public_spki(device)
    assert len(pub162) == 162 and pub162[29:157] == der[11:139]
    assert pub162 == device.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_signature_is_raw_type1_around_the_bare_hmac(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    server, _ = keys
    h = hashlib.sha1(b"x").digest()
    sig = hs.sign_raw(server, h)
    n = server.public_key().public_numbers()
    block = pow(int.from_bytes(sig, "big"), n.e, n.n).to_bytes(256, "big")
    assert block == b"\x00\x01" + b"\xff" * 233 + b"\x00" + h
    assert hs.verify_raw(server.public_key(), sig, h)
    normal = server.sign(b"x", padding.PKCS1v15(), hashes.SHA1())  # DigestInfo inside: a Core rejects it
    assert not hs.verify_raw(server.public_key(), normal, h)
    assert not hs.verify_raw(server.public_key(), hs.sign_raw(server, h[:19]), h)  # a shorter block inside
    assert not hs.verify_raw(server.public_key(), sig[:-1] + bytes([sig[-1] ^ 1]), h)


def test_openssl_raw_signature_equals_the_crt(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The libcrypto path (rsa_raw) and the gmpy2 CRT fallback give the same (deterministic) signature."""
    server, _ = keys
    h = hashlib.sha1(b"y").digest()
    if not rsa_raw.available():
        (pytest.fail if os.environ.get("CI") else pytest.skip)("libcrypto not loadable (apt-get install libssl3)")
    fast = rsa_raw.sign(server, h)
    monkeypatch.setattr(rsa_raw, "sign", lambda key, data: None)
    assert fast == hs.sign_raw(server, h)


@pytest.mark.parametrize("with_key", [False, True])
def test_full_handshake_both_sides(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], with_key: bool) -> None:
    server, device = keys
    nonce, dev_id = os.urandom(40), os.urandom(12)
    block = hs.device_hello(server.public_key(), nonce, dev_id, device if with_key else None)
    assert len(block) == 256
    hello = hs.open_device_hello(server, nonce, block)
    assert hello.device_id == dev_id
    assert hello.generation == ("os" if with_key else "ccl")
    assert (hello.public_key_der == hs.device_public_spki(device)) if with_key else hello.public_key_der is None
    material = os.urandom(40)
    reply = hs.server_reply(server, device.public_key(), material)
    assert len(reply) == 384
    assert hmac.compare_digest(reply[128:], hs.sign_raw(server, hmac.new(material, reply[:128], hashlib.sha1).digest()))
    session = hs.open_server_reply(device, server.public_key(), reply)
    assert session.material == material and session.key == material[:16] and session.iv == material[16:32]
    assert session.device_mid_start == int.from_bytes(material[32:34], "big")
    assert session.device_token_start == material[34]


def test_wrong_nonce_and_tampered_reply_refused(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    server, device = keys
    nonce = os.urandom(40)
    block = hs.device_hello(server.public_key(), nonce, os.urandom(12))
    with pytest.raises(RemoteProtocolError, match="nonce"):
        hs.open_device_hello(server, os.urandom(40), block)
    reply = bytearray(hs.server_reply(server, device.public_key(), os.urandom(40)))
    reply[200] ^= 1
    with pytest.raises(RemoteProtocolError, match="signature"):
        hs.open_server_reply(device, server.public_key(), bytes(reply))
