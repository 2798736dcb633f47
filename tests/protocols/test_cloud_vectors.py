"""The unit-test fixtures of core-communication-lib master 54c1e31, read in place.

The fixtures are not copied into this repository: they are read from the real archive in
../shared/peers, unpacked for the session (SPARKFLASH_CCL_TESTS may point at the `tests`
directory of another checkout instead). The plaintext vectors are in test_coap.py.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.protocols import cloud_handshake as hs
from sparkflash.protocols import coap, ota
from sparkflash.protocols.cloud_framing import Opener, Sealer, decrypt, encrypt

DIR = Path()


@pytest.fixture(autouse=True, scope="module")
def _fixture_dir(unpack_peer: Callable[[str], Path]) -> None:
    """The archive's tests/ folder (or SPARKFLASH_CCL_TESTS), for fixture() below."""
    global DIR
    env = os.environ.get("SPARKFLASH_CCL_TESTS")
    DIR = Path(env) if env else unpack_peer("core-communication-lib-master") / "tests"
    assert (DIR / "TestAES.cpp").is_file(), f"{DIR}: no TestAES.cpp"


def _literal(text: str) -> bytes:
    """A C initialiser: "\\x.."-string literals or a {0x.., ...} list."""
    text = text.strip()
    if text.startswith("{"):
        return bytes(int(v, 0) for v in re.findall(r"0[xX][0-9a-fA-F]+|\d+", text[1 : text.index("}")]))
    out = b""
    for s in re.findall(r'"((?:[^"\\]|\\.)*)"', text[: text.index(";")]):
        out += s.encode("latin-1").decode("unicode_escape").encode("latin-1")
    return out


def fixture(file: str, name: str, after: str = "") -> bytes:
    src = (DIR / file).read_text()
    start = src.index(after) if after else 0
    m = re.search(rf"{re.escape(name)}\[\d*\]\s*=\s*", src[start:])
    assert m, f"{file}: no {name}"
    return _literal(src[start + m.end():])


def _der(raw: bytes) -> bytes:
    return raw[: 4 + int.from_bytes(raw[2:4], "big")]  # zero-padded slot -> DER length


def test_aes_vector() -> None:
    cred = fixture("TestAES.cpp", "AESFixture::credentials")
    ct, pt = fixture("TestAES.cpp", "AESFixture::ciphertext"), fixture("TestAES.cpp", "AESFixture::plaintext")
    assert decrypt(cred[:16], cred[16:32], ct) == b"Super secret message\n" == pt[:21]
    assert encrypt(cred[:16], cred[16:32], pt[:21]) == ct


def test_handshake_vector() -> None:
    f = "TestHandshake.cpp"
    dev = serialization.load_der_private_key(_der(fixture(f, "HandshakeFixture::private_key")), None)
    spki = fixture(f, "HandshakeFixture::pubkey")[:294]
    srv = serialization.load_der_public_key(spki)
    assert isinstance(dev, rsa.RSAPrivateKey) and isinstance(srv, rsa.RSAPublicKey)
    assert spki[33:289] == srv.public_numbers().n.to_bytes(256, "big")
    enc = fixture(f, "HandshakeFixture::encrypted_aes_credentials")[:128]
    want_hmac = fixture(f, "HandshakeFixture::expected_hmac")[:20]
    sig = fixture(f, "HandshakeFixture::signature")[:256]
    session = hs.open_server_reply(dev, srv, enc + sig)  # decrypt + HMAC + raw signature check
    # the spec's "7b7d72" is a typo
    assert session.material.hex().startswith("3e78eb7a") and session.material.hex().endswith("3b7d72")
    assert hmac.new(session.material, enc, hashlib.sha1).digest() == want_hmac
    assert hs.verify_raw(srv, sig, want_hmac)


def _coap_session() -> hs.Session:
    f = "TestCoAP.cpp"
    dev = serialization.load_der_private_key(_der(fixture(f, "CoAPFixture::private_key")), None)
    srv = serialization.load_der_public_key(fixture(f, "CoAPFixture::pubkey")[:294])
    assert isinstance(dev, rsa.RSAPrivateKey) and isinstance(srv, rsa.RSAPublicKey)
    return hs.open_server_reply(dev, srv, fixture(f, "CoAPFixture::signed_encrypted_credentials")[:384])


def test_coap_vectors_received() -> None:
    s = _coap_session()
    assert s.material.hex().startswith("508e8afd") and s.material.hex().endswith("c50e2d6d")
    assert s.device_mid_start + 1 == 0xF649 and s.device_token_start + 1 == 0x0E

    def received(test: str) -> coap.Message:
        return coap.decode(decrypt(s.key, s.iv, fixture("TestCoAP.cpp", "ciphertext", after=test)))

    ub = received("ReceivedMessageRecognizesUpdateBegin")
    assert (ub.code, ub.mid, ub.token, ub.path) == (coap.POST, 0xABD0, b"\x33", "u")
    ch = received("ReceivedMessageRecognizesChunk")
    assert ota.parse_chunk(ch)[0] == 0x01234567 and (ch.mid, ch.token) == (0xABD1, b"\x22")
    assert len(ch.payload) == 72 and ota.crc32(ch.payload) == 0xE3E71DBA  # the tests mock the CRC (§12 caveat)
    ud = received("ReceivedMessageRecognizesUpdateDone")
    assert coap.encode(ud) == coap.encode(ota.update_done(0xABD2, b"\x11"))
    fn = received("ReturnsCoAPMessageTypeFunction")
    assert fn.options == ((11, b"f"), (11, b"brew"), (15, b"32,240"))


@pytest.mark.parametrize("test, msg", [
    ("HelloMatchesOpenSSL", coap.Message(coap.NON, coap.POST, 0xF649, b"", ((11, b"h"),), bytes.fromhex("ffffffff0000"))),
    ("ChunkReceivedMatchesOpenSSL", ota.chunk_received(0xF649, b"\x01", True)),
    ("UpdateReadyMatchesOpenSSL", ota.update_ready(0xF649, b"\x10", None)),
])
def test_coap_vectors_produced(test: str, msg: coap.Message) -> None:
    s = _coap_session()
    want = fixture("TestCoAP.cpp", "expected", after=test)
    assert Sealer(s.key, s.iv).seal(coap.encode(msg))[2:] == want


def test_iv_chaining_vector_from_the_protocol_fixture() -> None:
    """Device Hello, then the ACK and UpdateReady for an UpdateBegin: each IV = previous first block."""
    f = "ConstructorFixture.cpp"
    dev = serialization.load_der_private_key(_der(fixture(f, "ConstructorFixture::private_key")), None)
    srv = serialization.load_der_public_key(fixture(f, "ConstructorFixture::pubkey")[:294])
    assert isinstance(dev, rsa.RSAPrivateKey) and isinstance(srv, rsa.RSAPublicKey)
    s = hs.open_server_reply(dev, srv, fixture(f, "ConstructorFixture::signed_encrypted_credentials")[:384])
    ids = coap.MessageIds(s.device_mid_start, s.device_token_start)
    t = "TestSparkProtocol.cpp"
    o = Opener(s.key, s.iv)
    o.receive_data(fixture(t, "update_begin", after="EventLoopRespondsToUpdateBeginWithACK"))
    ub = coap.decode(o.next_message() or b"")
    assert (ub.code, ub.mid, ub.token, ub.path) == (coap.POST, 0xABD0, b"\x33", "u")
    dev_out = Sealer(s.key, s.iv)
    hello = coap.Message(coap.NON, coap.POST, ids.next_mid(), b"", ((11, b"h"),), bytes.fromhex("ffffffff0000"))
    assert hello.mid == 0x97B2
    assert dev_out.seal(coap.encode(hello)) == fixture(t, "expected", after="HandshakeSendsExpectedHello")[:18]
    assert dev_out.seal(coap.encode(ota.empty_ack(0xABD0))) == fixture(t, "expected", after="RespondsToUpdateBeginWithACK")
    ready = ota.update_ready(ids.next_mid(), ub.token, None)
    assert dev_out.seal(coap.encode(ready)) == fixture(t, "expected", after="RespondsToUpdateBeginWithUpdateReady")
    missed = ota.chunk_missed(ids.next_mid(), [0])  # the 3-s re-request: 40 01 97b4 b1 63 ff 0000
    assert dev_out.seal(coap.encode(missed)) == fixture(t, "expected", after="EventLoopSendsChunkMissedOnTimeout")
