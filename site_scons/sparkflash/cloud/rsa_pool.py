"""The server's RSA work off the event loop: handshakes in a pool of worker processes.

Each handshake costs the server an RSA-2048 decryption and a raw RSA-2048 signature (plus
an RSA-1024 encryption); on the event loop that serialised a reconnect storm of 1,000
devices on one core. The workers get the server key once (DER, at start-up) and keep it.
`RsaPool(0)` runs the same functions inline (tests, or a single-core host).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.protocols.cloud_handshake import (
    DeviceHello,
    open_device_hello,
    server_reply,
)

__all__ = ["RsaPool"]

_key: rsa.RSAPrivateKey | None = None


def _init(der: bytes) -> None:
    global _key
    k = serialization.load_der_private_key(der, None)
    assert isinstance(k, rsa.RSAPrivateKey)
    _key = k


def _open(nonce: bytes, block: bytes) -> DeviceHello:
    assert _key is not None
    return open_device_hello(_key, nonce, block)


def _reply(device_pub_der: bytes, material: bytes) -> bytes:
    assert _key is not None
    pub = serialization.load_der_public_key(device_pub_der)
    assert isinstance(pub, rsa.RSAPublicKey)
    return server_reply(_key, pub, material)


class RsaPool:
    def __init__(self, key: rsa.RSAPrivateKey, workers: int) -> None:
        self.key, self.workers = key, workers
        self._pool: Executor | None = None

    def _executor(self) -> Executor:
        if self._pool is None:
            der = self.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
            # spawn: the server runs threads, and fork() in a threaded process can deadlock
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init, initargs=(der,))
        return self._pool

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor(), fn, *args)

    async def open_hello(self, nonce: bytes, block: bytes) -> DeviceHello:
        if not self.workers:
            return open_device_hello(self.key, nonce, block)
        hello: DeviceHello = await self._run(_open, nonce, block)
        return hello

    async def reply(self, device_key: rsa.RSAPublicKey, material: bytes) -> bytes:
        if not self.workers:
            return server_reply(self.key, device_key, material)
        der = device_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        out: bytes = await self._run(_reply, der, material)
        return out

    def warm(self) -> None:
        """Start the workers now (they take a moment to import), not at the first handshake."""
        if self.workers:
            ex = self._executor()
            for f in [ex.submit(int) for _ in range(self.workers)]:
                f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
