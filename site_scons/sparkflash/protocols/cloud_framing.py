"""AES-128-CBC message framing after the handshake (spark-cloud-protocol.md §4).

Each message is `N` (u16 big-endian) + N bytes of ciphertext of one CoAP message with
PKCS#7 padding. Every message is a fresh CBC encryption from its direction's IV, and that
IV then becomes the message's *first* ciphertext block (not the last, as a CBC stream
would): two independent chains, both starting at the session IV. Pure: bytes in, bytes out.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sparkflash.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["BLOCK", "DEVICE_BUFFER", "pad", "unpad", "encrypt", "decrypt", "Sealer", "Opener"]

BLOCK = 16
DEVICE_BUFFER = 640  # the Core's single protocol buffer (QUEUE_SIZE / PROTOCOL_BUFFER_SIZE)


def pad(data: bytes) -> bytes:
    p = BLOCK - len(data) % BLOCK
    return data + bytes([p]) * p


def unpad(data: bytes) -> bytes:
    if not data or len(data) % BLOCK:
        raise RemoteProtocolError(f"AES message of {len(data)} bytes is not a whole number of blocks")
    p = data[-1]
    if not 1 <= p <= BLOCK or data[-p:] != bytes([p]) * p:
        raise RemoteProtocolError(f"bad PKCS#7 padding (last byte 0x{p:02x})")
    return data[:-p]


def encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(pad(plaintext)) + enc.finalize()


def decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    if not ciphertext or len(ciphertext) % BLOCK:
        raise RemoteProtocolError(f"AES message of {len(ciphertext)} bytes is not a whole number of blocks")
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return unpad(dec.update(ciphertext) + dec.finalize())


class Sealer:
    """One direction's sending half: CoAP bytes -> length-prefixed ciphertext (write it in ONE call)."""

    def __init__(self, key: bytes, iv: bytes, max_len: int = 0xFFFF) -> None:
        self.key, self.iv, self.max_len = key, iv, max_len

    def seal(self, plaintext: bytes) -> bytes:
        ct = encrypt(self.key, self.iv, plaintext)
        if len(ct) > self.max_len:
            raise LocalProtocolError(f"message of {len(ct)} ciphertext bytes exceeds the peer's {self.max_len}-byte limit")
        self.iv = ct[:BLOCK]
        return len(ct).to_bytes(2, "big") + ct


class Opener:
    """One direction's receiving half: feed stream bytes, take whole decrypted messages.

    `max_len` models the receiver's buffer: a Core drops the connection for N > 640.
    """

    def __init__(self, key: bytes, iv: bytes, max_len: int = 0xFFFF) -> None:
        self.key, self.iv, self.max_len = key, iv, max_len
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_message(self) -> bytes | None:
        """The next plaintext, or None if more bytes are needed."""
        if len(self._buf) < 2:
            return None
        n = int.from_bytes(self._buf[:2], "big")
        if n == 0 or n % BLOCK or n > self.max_len:
            raise RemoteProtocolError(f"frame length {n} (must be a non-zero multiple of 16, at most {self.max_len})")
        if len(self._buf) < 2 + n:
            return None
        ct = bytes(self._buf[2 : 2 + n])
        del self._buf[: 2 + n]
        pt = decrypt(self.key, self.iv, ct)
        self.iv = ct[:BLOCK]
        return pt
