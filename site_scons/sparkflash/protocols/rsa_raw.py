"""The handshake's raw signature (PKCS#1 type-1 padding around a bare digest) with OpenSSL.

A Core verifies the server's signature as tropicssl RSA_RAW: type-1 padding around the
20-byte HMAC itself, no DigestInfo. `cryptography` signs only with a DigestInfo, so this
calls OpenSSL's EVP_PKEY_sign (PKCS#1 padding, no digest set: what `openssl pkeyutl
-sign` does) in the system libcrypto through ctypes. It is ~4x faster than the CRT with
gmpy2's powmod, and the signature is the server's biggest RSA cost in a reconnect storm.
Where libcrypto cannot be loaded, `sign` returns None and the caller uses its own CRT.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["available", "sign"]

RSA_PKCS1_PADDING = 1
_CACHE_MAX = 16  # server keys kept loaded in OpenSSL (a server has one; tests make more)


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        lib.d2i_AutoPrivateKey.restype = vp
        lib.d2i_AutoPrivateKey.argtypes = [vp, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
        lib.EVP_PKEY_free.argtypes = [vp]
        lib.EVP_PKEY_CTX_new.restype = vp
        lib.EVP_PKEY_CTX_new.argtypes = [vp, vp]
        lib.EVP_PKEY_CTX_free.argtypes = [vp]
        lib.EVP_PKEY_sign_init.argtypes = [vp]
        lib.EVP_PKEY_CTX_set_rsa_padding.argtypes = [vp, ctypes.c_int]  # a function since OpenSSL 3.0
        lib.EVP_PKEY_sign.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(sz), ctypes.c_char_p, sz]
    except (OSError, AttributeError):
        return None
    return lib


_lib = _load()
_keys: dict[int, int] = {}  # modulus -> EVP_PKEY*; never freed while cached (another thread may use it)


def available() -> bool:
    return _lib is not None


def _pkey(key: rsa.RSAPrivateKey, n: int) -> tuple[int, bool]:
    """(EVP_PKEY*, owned): owned means the caller frees it (the cache was full). dict.get and
    setdefault are atomic under the GIL: two threads loading one key keep the first."""
    assert _lib is not None
    cached = _keys.get(n)
    if cached is not None:
        return cached, False
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    buf = ctypes.c_char_p(der)
    p = _lib.d2i_AutoPrivateKey(None, ctypes.byref(buf), len(der))
    if not p:
        raise ValueError("OpenSSL could not load the RSA key")
    if len(_keys) >= _CACHE_MAX:
        return p, True
    kept = _keys.setdefault(n, p)
    if kept != p:
        _lib.EVP_PKEY_free(p)
    return kept, False


def sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes | None:
    """RSA private operation on type-1 padded `data` (no DigestInfo); None without libcrypto."""
    if _lib is None:
        return None
    size = key.key_size // 8
    if len(data) > size - 11:
        raise ValueError(f"{len(data)} bytes do not fit a type-1 block of a {key.key_size}-bit key")
    pkey, owned = _pkey(key, key.public_key().public_numbers().n)
    ctx = _lib.EVP_PKEY_CTX_new(pkey, None)  # one per call: a context is not shared between threads
    try:
        out, n = ctypes.create_string_buffer(size), ctypes.c_size_t(size)
        if (not ctx or _lib.EVP_PKEY_sign_init(ctx) != 1 or _lib.EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1
                or _lib.EVP_PKEY_sign(ctx, out, ctypes.byref(n), data, len(data)) != 1 or n.value != size):
            raise ValueError("OpenSSL refused the raw RSA signature")
        return out.raw
    finally:
        if ctx:
            _lib.EVP_PKEY_CTX_free(ctx)
        if owned:
            _lib.EVP_PKEY_free(pkey)
