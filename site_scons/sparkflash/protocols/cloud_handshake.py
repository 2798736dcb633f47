"""The Spark Core RSA handshake, both sides, pure (spark-cloud-protocol.md §2-3).

S->D 40-byte nonce; D->S 256 bytes = RSA-2048 PKCS#1 v1.5 encryption of nonce + device
id (+ the device's 162-byte public key on Device OS); S->D 384 bytes = the 40-byte
session material encrypted under the device's RSA-1024 key, then a signature that is
*raw* type-1 padding around the bare 20-byte HMAC-SHA1 (no DigestInfo): a normal
`sign(SHA1)` signature is rejected by the Core, so it is built with the private exponent.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sparkflash.errors import InputError, RemoteProtocolError
from sparkflash.protocols import rsa_raw

try:
    from gmpy2 import powmod as _powmod  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - a dependency; pow gives the same result, slower
    _powmod = pow

__all__ = [
    "NONCE_LEN", "ID_LEN", "HELLO_LEN", "REPLY_LEN", "SESSION_LEN", "SPKI_1024_PREFIX",
    "Session", "DeviceHello", "server_public_der", "device_public_spki", "sign_raw", "verify_raw",
    "device_hello", "open_device_hello", "server_reply", "open_server_reply",
]

NONCE_LEN, ID_LEN, SESSION_LEN = 40, 12, 40
HELLO_LEN = 256  # RSA-2048 block
REPLY_LEN = 384  # 128-byte session ciphertext + 256-byte signature
CCL_PLAINTEXT, OS_PLAINTEXT = 52, 214
# [OS] extract_public_rsa_key: fixed SPKI prefix of a 1024-bit key, then 128 modulus bytes, then e.
SPKI_1024_PREFIX = bytes.fromhex("30819f300d06092a864886f70d010101050003818d0030818902818100")
SPKI_2048_PREFIX = bytes.fromhex("30820122300d06092a864886f70d01010105000382010f003082010a0282010100")
E_SUFFIX = bytes.fromhex("0203010001")


@dataclass(frozen=True)
class Session:
    """What both sides derive from the 40 bytes of session material M."""

    material: bytes

    @property
    def key(self) -> bytes:
        return self.material[0:16]

    @property
    def iv(self) -> bytes:
        return self.material[16:32]

    @property
    def device_mid_start(self) -> int:
        """The device's counter; its first message id is this + 1."""
        return (self.material[32] << 8) | self.material[33]

    @property
    def device_token_start(self) -> int:
        return self.material[34]


@dataclass(frozen=True)
class DeviceHello:
    """The decrypted step-2 message."""

    device_id: bytes
    public_key_der: bytes | None  # Device OS adds its SPKI; 0.3.x firmware does not

    @property
    def generation(self) -> str:
        """'os' (Device OS, 214-byte plaintext) or 'ccl' (0.3.x / flasher_additions, 52 bytes)."""
        return "os" if self.public_key_der is not None else "ccl"


def server_public_der(key: rsa.RSAPublicKey) -> bytes:
    """The 294-byte SPKI a Core stores at 0x1000; it reads the modulus at fixed offset 33."""
    nums = key.public_numbers()
    if key.key_size != 2048 or nums.e != 65537:
        raise InputError(f"server key must be RSA-2048 with e=65537 (got {key.key_size} bits, e={nums.e})")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert der[:33] == SPKI_2048_PREFIX and len(der) == 294
    return der


def device_public_spki(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    """The 162-byte SPKI a Device OS Core rebuilds from its private key for the handshake."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    nums = pub.public_numbers()
    if pub.key_size != 1024 or nums.e != 65537:
        raise InputError(f"device key must be RSA-1024 with e=65537 (got {pub.key_size} bits, e={nums.e})")
    return SPKI_1024_PREFIX + nums.n.to_bytes(128, "big") + E_SUFFIX


def _type1_block(digest: bytes, size: int) -> int:
    return int.from_bytes(b"\x00\x01" + b"\xff" * (size - 3 - len(digest)) + b"\x00" + digest, "big")


def sign_raw(key: rsa.RSAPrivateKey, digest: bytes) -> bytes:
    """Type-1 padding around the bare digest, private operation; what tropicssl RSA_RAW verifies.

    cryptography cannot sign without a DigestInfo: OpenSSL's own raw PKCS#1 signature
    (`rsa_raw`, ~4x faster) when libcrypto loads, else the CRT here with GMP's powmod
    (gmpy2, 4-5x faster than Python's pow). Every handshake needs one: a reconnect storm's
    biggest server cost."""
    fast = rsa_raw.sign(key, digest)
    if fast is not None:
        return fast
    p = key.private_numbers()
    size = key.key_size // 8
    m = _type1_block(digest, size)
    s1, s2 = int(_powmod(m, p.dmp1, p.p)), int(_powmod(m, p.dmq1, p.q))
    s = s2 + p.q * ((p.iqmp * (s1 - s2)) % p.p)
    return s.to_bytes(size, "big")


def verify_raw(key: rsa.RSAPublicKey, signature: bytes, digest: bytes) -> bool:
    """The device's check: the signature opens to exactly type-1 padding around `digest`.

    OpenSSL's recovery with no digest algorithm strips the type-1 padding without looking
    for a DigestInfo (30x faster than Python's pow: every light device in a storm does one)."""
    if len(signature) != key.key_size // 8:
        return False
    try:
        return hmac.compare_digest(key.recover_data_from_signature(signature, padding.PKCS1v15(), None), digest)
    except InvalidSignature:
        return False


# -- device side -----------------------------------------------------------------------
def device_hello(server_key: rsa.RSAPublicKey, nonce: bytes, device_id: bytes,
                 device_key: rsa.RSAPrivateKey | None = None) -> bytes:
    """Step 2. With `device_key`, the Device OS form (adds the 162-byte public key)."""
    if len(nonce) != NONCE_LEN or len(device_id) != ID_LEN:
        raise InputError(f"nonce must be {NONCE_LEN} bytes and device id {ID_LEN} (got {len(nonce)}, {len(device_id)})")
    plain = nonce + device_id + (device_public_spki(device_key) if device_key is not None else b"")
    return server_key.encrypt(plain, padding.PKCS1v15())


def open_server_reply(device_key: rsa.RSAPrivateKey, server_key: rsa.RSAPublicKey, reply: bytes) -> Session:
    """Step 3 on the device: decrypt the session material, check the raw HMAC signature."""
    if len(reply) != REPLY_LEN:
        raise RemoteProtocolError(f"handshake reply of {len(reply)} bytes (expected {REPLY_LEN})")
    ct, sig = reply[:128], reply[128:]
    try:
        material = device_key.decrypt(ct, padding.PKCS1v15())
    except ValueError:
        raise RemoteProtocolError("handshake reply: session ciphertext does not decrypt with the device key") from None
    if len(material) != SESSION_LEN:
        raise RemoteProtocolError(f"handshake reply: session material of {len(material)} bytes (expected 40)")
    if not verify_raw(server_key, sig, hmac.new(material, ct, hashlib.sha1).digest()):
        raise RemoteProtocolError("handshake reply: signature does not verify with the server key at 0x1000")
    return Session(material)


# -- server side -----------------------------------------------------------------------
def open_device_hello(server_key: rsa.RSAPrivateKey, nonce: bytes, block: bytes) -> DeviceHello:
    """Step 2 on the server: decrypt, check the nonce, split id and optional key."""
    if len(block) != HELLO_LEN:
        raise RemoteProtocolError(f"handshake: {len(block)} bytes from the device (expected {HELLO_LEN})")
    try:
        plain = server_key.decrypt(block, padding.PKCS1v15())
    except ValueError:
        raise RemoteProtocolError("handshake: device message does not decrypt with the server key") from None
    if len(plain) < CCL_PLAINTEXT:
        raise RemoteProtocolError(f"handshake: plaintext of {len(plain)} bytes (expected >= {CCL_PLAINTEXT})")
    if not hmac.compare_digest(plain[:NONCE_LEN], nonce):
        raise RemoteProtocolError("handshake: the device did not echo our nonce")
    offered = plain[CCL_PLAINTEXT:] or None
    return DeviceHello(plain[NONCE_LEN:CCL_PLAINTEXT], offered)


def server_reply(server_key: rsa.RSAPrivateKey, device_key: rsa.RSAPublicKey, material: bytes) -> bytes:
    """Step 3: C (session material under the device key) + raw signature over HMAC(M, C)."""
    if len(material) != SESSION_LEN:
        raise InputError(f"session material must be {SESSION_LEN} bytes (got {len(material)})")
    ct = device_key.encrypt(material, padding.PKCS1v15())
    return ct + sign_raw(server_key, hmac.new(material, ct, hashlib.sha1).digest())
