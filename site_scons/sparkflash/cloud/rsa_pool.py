"""The server's RSA work off the event loop: handshakes in a pool of worker processes.

Each handshake costs the server an RSA-2048 decryption and a raw RSA-2048 signature (plus
an RSA-1024 encryption); on the event loop that serialised a reconnect storm of 1,000
devices on one core. The workers get the server key once (DER, at start-up) and keep it.
Requests made in the same event-loop iteration go to the workers in batches (up to
`BATCH` per task, spread over the workers): in a storm each task's hand-off (pickling,
pipe writes, the executor's threads, all contending with the event loop for the GIL) cost
the server's main process about as much as the event loop's own work per handshake.
`RsaPool(0)` runs the same functions inline (tests, or a single-core host).
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.protocols.cloud_handshake import (
    DeviceHello,
    open_device_hello,
    server_reply,
)

__all__ = ["RsaPool", "BATCH"]

BATCH = 16  # requests per worker task: amortises the hand-off, still keeps both workers busy early
Call = tuple[Callable[..., Any], tuple[Any, ...]]

_key: rsa.RSAPrivateKey | None = None


def _init(der: bytes, parent: int) -> None:
    global _key
    k = serialization.load_der_private_key(der, None)
    assert isinstance(k, rsa.RSAPrivateKey)
    _key = k
    threading.Thread(target=_orphan_watch, args=(parent,), name="sparkflash-rsa-parent", daemon=True).start()


def _orphan_watch(parent: int) -> None:
    """A SIGKILLed server never tells its workers, and a spawn worker waiting on the executor's queue
    does not notice (the queue's pipe stays open in the worker itself): leave once the parent is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _open(nonce: bytes, block: bytes) -> DeviceHello:
    assert _key is not None
    return open_device_hello(_key, nonce, block)


def _reply(device_pub_der: bytes, material: bytes) -> bytes:
    assert _key is not None
    pub = serialization.load_der_public_key(device_pub_der)
    assert isinstance(pub, rsa.RSAPublicKey)
    return server_reply(_key, pub, material)


def _batch(calls: list[Call]) -> list[tuple[bool, Any]]:
    """In a worker: each call's (True, result) or (False, exception), in order."""
    out: list[tuple[bool, Any]] = []
    for fn, args in calls:
        try:
            out.append((True, fn(*args)))
        except Exception as e:  # noqa: BLE001 - handed back to the caller's await
            out.append((False, e))
    return out


class RsaPool:
    def __init__(self, key: rsa.RSAPrivateKey, workers: int) -> None:
        self.key, self.workers = key, workers
        self._pool: Executor | None = None
        self._queue: list[tuple[Call, asyncio.Future[Any]]] = []
        self._closed = False

    def _executor(self) -> Executor:
        if self._pool is None:
            der = self.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
            # spawn: the server runs threads, and fork() in a threaded process can deadlock
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init, initargs=(der, os.getpid()))
        return self._pool

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append(((fn, args), fut))
        if len(self._queue) == 1:  # the first of this iteration: flush once the others have queued
            loop.call_soon(self._flush, loop)
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        items, self._queue = self._queue, []
        if self._closed:
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(ConnectionError("the server is closing"))
            return
        ex = self._executor()
        for k in range(0, len(items), BATCH):
            part = items[k : k + BATCH]
            task = ex.submit(_batch, [c for c, _ in part])
            task.add_done_callback(functools.partial(self._done, loop, part))

    def _done(self, loop: asyncio.AbstractEventLoop, part: list[tuple[Call, asyncio.Future[Any]]],
              task: Future[list[tuple[bool, Any]]]) -> None:
        """In the executor's thread: hand the results to the event loop (unless it has closed)."""
        try:
            loop.call_soon_threadsafe(self._deliver, part, task)
        except RuntimeError:  # the loop closed first: nobody waits any more
            pass

    @staticmethod
    def _deliver(part: list[tuple[Call, asyncio.Future[Any]]], task: Future[list[tuple[bool, Any]]]) -> None:
        try:
            results = task.result()
        except Exception as e:  # the pool broke: every caller hears it
            results = [(False, e)] * len(part)
        except BaseException:  # cancelled by close()
            results = [(False, ConnectionError("the server is closing"))] * len(part)
        for (_, fut), (ok, value) in zip(part, results, strict=True):
            if fut.done():  # the caller gave up (timeout, closed)
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

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
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
