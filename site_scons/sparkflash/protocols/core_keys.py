"""The Core's fixed-offset reader of its RSA-1024 device key, and keys it can read.

core-communication-lib's `init_rsa_context_with_private_key` (54c1e31, unchanged in
Device OS v0.4.9) does not parse DER: it reads the modulus at offset 9/10 and then jumps
fixed distances to D, P, Q, DP, DQ, QP, only testing the low bit of each length byte for
"a leading zero follows". A key whose integers have other lengths (e.g. a 127-byte D,
length byte 0x7f) is misread, and that device can never finish a handshake. About 1 % of
keys from a general DER encoder are such keys, so every key we make for a Core is read
back by this reader and regenerated until it reads exactly.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["KEY_SLOT", "core_read_private_key", "core_reads_exactly", "generate_device_key"]

KEY_SLOT = 612  # bytes reserved at external 0x2000
E = 65537


def core_read_private_key(raw: bytes) -> tuple[int, int, int, int, int, int, int]:
    """(N, D, P, Q, DP, DQ, QP) exactly as the Core's reader takes them from the slot."""
    buf = raw.ljust(KEY_SLOT + 8, b"\x00")

    def field(i: int, size: int) -> tuple[int, int]:
        if buf[i] & 1:  # "key contains an extra zero byte"
            i += 1
        i += 1
        return int.from_bytes(buf[i : i + size], "big"), i

    n, i = field(9, 128)
    d, i = field(i + 135, 128)
    p, i = field(i + 129, 64)
    q, i = field(i + 65, 64)
    dp, i = field(i + 65, 64)
    dq, i = field(i + 65, 64)
    qp, _ = field(i + 65, 64)
    return n, d, p, q, dp, dq, qp


def core_reads_exactly(key: rsa.RSAPrivateKey) -> bool:
    """True if a Core would read back this key's numbers exactly from its DER."""
    if key.key_size != 1024 or key.public_key().public_numbers().e != E:
        return False
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    if len(der) > KEY_SLOT:
        return False
    pn = key.private_numbers()
    want = (pn.public_numbers.n, pn.d, pn.p, pn.q, pn.dmp1, pn.dmq1, pn.iqmp)
    return core_read_private_key(der) == want


def generate_device_key(max_tries: int = 1000) -> rsa.RSAPrivateKey:
    """An RSA-1024, e=65537 key the Core's reader reads back exactly."""
    for _ in range(max_tries):
        key = rsa.generate_private_key(public_exponent=E, key_size=1024)
        if core_reads_exactly(key):
            return key
    raise RuntimeError(f"no Core-readable key in {max_tries} tries")  # pragma: no cover - p ~ 0.012 ** 1000
