"""`sparkflash cloud serve`: the device server on TCP 5683 plus the loopback admin API.

One asyncio loop holds every device session and every running deployment (an asyncio task
per device, `cloud.deployments.run_member`). State lives in the fleet store (`--database`:
SQLite under the state directory by default, or PostgreSQL): registered devices, rollouts
and deployments, per-region progress, events. The store is used from one worker thread, in
order, so the loop never waits on the database. `ServerThread` runs the whole server in the
background for tests, benchmarks and the CLI alike.

Several instances may share one PostgreSQL database behind a TCP load balancer: each records
the devices whose connection it holds (`fleet.instances.Presence`: `devices.instance`,
renewed by a heartbeat every third of `lease_s`, the rows of an instance silent for a lease
released by the others' sweep), and claims only the rollout members whose device it holds
(`cloud.work`), so a rollout created through any instance's admin API reaches every device.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.cloud.admin import handle_http
from sparkflash.cloud.deployments import LiveEvents
from sparkflash.cloud.limits import Limits
from sparkflash.cloud.registry import DeviceRegistry
from sparkflash.cloud.releases import BlobStore, ReleaseSource
from sparkflash.cloud.rsa_pool import RsaPool
from sparkflash.cloud.session import DeviceSession
from sparkflash.cloud.work import Claimer
from sparkflash.deploy.run import Ledger
from sparkflash.errors import InputError, SparkflashError, TransportTimeout
from sparkflash.fleet import Store, open_store
from sparkflash.fleet.ids import instance_id
from sparkflash.fleet.instances import Presence
from sparkflash.manifest.trust import Trust

__all__ = ["CloudServer", "Limits", "ServerThread", "load_or_create_token", "load_server_key"]

log = logging.getLogger("sparkflash.cloud")
T = TypeVar("T")


def load_server_key(path: Path) -> rsa.RSAPrivateKey:
    """The server's RSA-2048 private key, DER (PKCS#1 or PKCS#8) or PEM."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    try:
        loader = serialization.load_pem_private_key if raw.startswith(b"-----") else serialization.load_der_private_key
        key = loader(raw, None)
    except (ValueError, TypeError) as e:
        raise InputError(f"{path}: not an unencrypted RSA private key ({e})") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != 2048:
        raise InputError(f"{path}: the Core needs an RSA-2048 server key")
    return key


def load_or_create_token(path: Path) -> str:
    """The admin API's bearer token: created 0600 on first use, then read."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if len(token) < 32:
            raise InputError(f"{path}: admin token shorter than 32 characters") from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class CloudServer:
    def __init__(self, key: rsa.RSAPrivateKey, registry: DeviceRegistry, *, host: str = "127.0.0.1",
                 port: int = 5683, admin: tuple[str, int] | None = ("127.0.0.1", 8683),
                 trust: Trust | None = None, token: str | None = None, store: Path | None = None,
                 insecure_unsigned: bool = False, limits: Limits | None = None, rsa_workers: int = 0,
                 database: str | Path | None = None, instance: str = "local", s3_endpoint: str | None = None,
                 lease_s: float = 30.0) -> None:
        self.key, self.registry, self.trust = key, registry, trust
        self.host, self.port, self.admin_addr = host, port, admin
        self.token = token or secrets.token_urlsafe(32)
        self.insecure_unsigned = insecure_unsigned  # tests only: deploy unsigned releases
        self.limits = limits or Limits()
        self.rsa = RsaPool(key, rsa_workers)  # 0: handshakes on the event loop
        self.store = BlobStore(store or registry.root / ".store")
        self.ledger = Ledger(self.store.root / "ledger")  # last version deployed per device, by this server
        self.releases = ReleaseSource(self.store, trust, insecure_unsigned, endpoint_url=s3_endpoint)
        self.instance = instance_id(instance)
        self.db: Store = open_store(database or self.store.root / "fleet.db")
        self._dbx = ThreadPoolExecutor(1, thread_name_prefix="sparkflash-db")  # one connection, used in order
        self.lease_s = lease_s  # an instance silent this long loses its devices and its claims to the others
        self.presence = Presence(self.db, self.instance, lease_s=lease_s)
        self.work = Claimer(self, lease_s=lease_s)
        self._beat: asyncio.Task[None] | None = None
        self.peers: dict[str, int] = {}
        self._bucket, self._bucket_t = float(self.limits.pending_burst), time.monotonic()
        self.sessions: dict[str, DeviceSession] = {}
        self.deployments: dict[str, LiveEvents] = {}  # live event streams of the deployments seen here
        self._changed: asyncio.Condition | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._live: set[DeviceSession] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- the store, off the event loop ---------------------------------------------------
    async def db_call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run a store call on the database thread and wait for it."""
        return await asyncio.get_running_loop().run_in_executor(self._dbx, functools.partial(fn, *args, **kw))

    def db_later(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Queue a store write (kept in order with every other call); a failure is logged."""
        def check(f: Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("fleet store: %s failed: %s", getattr(fn, "__name__", fn), f.exception())

        try:
            self._dbx.submit(functools.partial(fn, *args, **kw)).add_done_callback(check)
        except RuntimeError:  # shutting down
            pass

    def import_device(self, device_id: str) -> bool:
        """A key file registered with `cloud register` (DIR/<id>.pub.pem) into the store; False if none.
        Blocking (reads the file)."""
        from cryptography.hazmat.primitives import serialization

        key = self.registry.lookup(device_id)
        if key is None:
            return False
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        old = self.db.device(device_id)
        caps = set(old.capabilities if old else ()) | ({"save_begin"} if self.registry.properties(device_id).get(
            "save_begin") else set())
        self.db.put_device(device_id, pem, labels=old.labels if old else (), capabilities=sorted(caps))
        return True

    def _import_all(self) -> None:
        from sparkflash.fleet.key_import import import_key_dir

        if not self.registry.root.is_dir():
            return
        done, problems = import_key_dir(self.db, self.registry.root)
        for d in done:
            if self.registry.properties(d).get("save_begin"):
                self.import_device(d)
        for p in problems:
            log.warning("device keys: %s", p)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._changed = asyncio.Condition()
        await asyncio.to_thread(self.rsa.warm)
        await self.db_call(self._import_all)
        released = await self.db_call(self.presence.begin)  # connections of an earlier life are gone
        if released:
            log.info("instance %s: released %d device(s) left from its previous run", self.instance, released)
        dev = await asyncio.start_server(self._on_device, self.host, self.port, backlog=512)
        self.port = dev.sockets[0].getsockname()[1]
        self._servers.append(dev)
        if self.admin_addr is not None:
            adm = await asyncio.start_server(lambda r, w: handle_http(self, r, w), *self.admin_addr)
            self.admin_addr = adm.sockets[0].getsockname()[:2]
            self._servers.append(adm)
        self.work.start()
        self._beat = asyncio.create_task(self._heartbeats(), name="sparkflash-heartbeat")
        log.info("cloud: devices on %s:%d, admin on %s, instance %s", self.host, self.port, self.admin_addr,
                 self.instance)

    async def close(self) -> None:
        """Stop listening and end every connection; handlers finish rather than being cancelled
        (a cancelled stream handler makes Python 3.11's asyncio log a spurious traceback)."""
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        await self.work.stop()
        for s in self._servers:
            s.close()
        for sess in list(self._live):
            sess.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        for s in self._servers:
            await s.wait_closed()
        self.rsa.close()
        try:
            await self.db_call(self.presence.end)  # a clean stop: its devices are released at once, no lease to wait
        except Exception as e:  # noqa: BLE001 - the database is away; the lease releases them
            log.warning("instance %s: could not release its devices: %s", self.instance, e)
        await self.db_call(self.db.close)
        self._dbx.shutdown()

    async def _heartbeats(self) -> None:
        """Every third of the lease: renew the rows of the devices held here (in line with the live
        sessions: a lost goodbye or hello is corrected), then release those of instances that went
        silent. On the database thread, after every connection change queued before it."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.db_call(self.presence.heartbeat, set(self.sessions))
                if await self.db_call(self.presence.sweep):
                    self.work.wake()  # their devices may be claimable now
            except Exception as e:  # noqa: BLE001 - the database is away: the next beat tries again
                log.warning("instance %s: heartbeat failed: %s", self.instance, e)

    async def _on_device(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = str(writer.get_extra_info("peername")[0])
        if self.peers.get(ip, 0) >= self.limits.per_peer:
            log.warning("refused a connection from %s: %d already open (limit per peer)", ip, self.peers[ip])
            writer.close()
            return
        self.peers[ip] = self.peers.get(ip, 0) + 1
        sess = DeviceSession(self, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._live.add(sess)
        self._handlers.add(task)
        try:
            await sess.run()
        finally:
            self._live.discard(sess)
            self._handlers.discard(task)
            self.peers[ip] -= 1
            if not self.peers[ip]:
                del self.peers[ip]

    def pending_allowed(self) -> bool:
        """May one more offered key be kept in pending/? (capped, and rate-limited by a token bucket)"""
        now = time.monotonic()
        lim = self.limits
        self._bucket = min(float(lim.pending_burst), self._bucket + (now - self._bucket_t) * lim.pending_per_s)
        self._bucket_t = now
        if self._bucket < 1 or self.registry.pending_count() >= lim.pending_max:
            return False
        self._bucket -= 1
        return True

    # -- SessionHost: what sessions report ---------------------------------------------
    async def registered(self, device_id: str) -> tuple[rsa.RSAPublicKey, dict[str, Any]] | None:
        """The device's key and declared properties from the store (a key file registered since the
        start is imported on its first handshake)."""
        from cryptography.hazmat.primitives import serialization

        def look() -> tuple[rsa.RSAPublicKey, dict[str, Any]] | None:
            dev = self.db.device(device_id)
            if dev is None and self.import_device(device_id):
                dev = self.db.device(device_id)
            if dev is None:
                return None
            key = serialization.load_pem_public_key(dev.public_key.encode())
            if not isinstance(key, rsa.RSAPublicKey):
                return None
            return key, {"save_begin": "save_begin" in dev.capabilities}

        try:
            return await self.db_call(look)
        except (SparkflashError, ValueError) as e:
            log.warning("device %s: %s", device_id, e)
            return None

    def refuse(self, device_id: str, peer: str, reason: str, offered_der: bytes | None = None) -> None:
        self.registry.refuse(device_id, peer, reason, offered_der if offered_der and self.pending_allowed() else None)

    def attach(self, s: DeviceSession) -> None:
        assert s.info is not None
        old = self.sessions.get(s.info.device_id)
        self.sessions[s.info.device_id] = s
        if old is not None and old is not s:
            old.close()
        self.db_later(self.presence.apply, {s.info.device_id: s.info.generation})
        self._notify()
        self.work.wake()

    def detach(self, s: DeviceSession) -> None:
        if s.info is not None and self.sessions.get(s.info.device_id) is s:
            del self.sessions[s.info.device_id]
            self.db_later(self.presence.apply, {s.info.device_id: None})
        self._notify()

    def _notify(self) -> None:
        async def _n() -> None:
            assert self._changed is not None
            async with self._changed:
                self._changed.notify_all()

        asyncio.ensure_future(_n())

    async def wait_session(self, device: str, timeout: float, *, not_before: DeviceSession | None = None) -> DeviceSession:
        """The device's live session (a newer one than `not_before`), waiting for it to connect."""
        assert self._changed is not None

        def ready() -> bool:
            s = self.sessions.get(device)
            return s is not None and s is not not_before and not s.closed.is_set()

        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(ready), timeout)
        except TimeoutError:
            raise TransportTimeout(f"device {device} did not connect to the cloud within {timeout:g} s") from None
        return self.sessions[device]

    def device_list(self) -> dict[str, Any]:
        """Registered devices (the store) with their live connection here, if any. Blocking: the database thread."""
        stored = {d.id: d for d in self.db.devices()}
        for d in self.registry.devices():  # registered with `cloud register` since the start: into the store
            if d not in stored and self.import_device(d):
                row = self.db.device(d)
                if row is not None:
                    stored[d] = row
        out = []
        for d in sorted(set(stored) | set(self.sessions)):
            s, row = self.sessions.get(d), stored.get(d)
            i = s.info if s else None
            out.append({"id": d, "connected": s is not None, "peer": s.peer if s else None,
                        "generation": i.generation if i else (row.generation if row else None),
                        "product_id": i.product_id if i else None,
                        "fast_ota": i.fast if i else None, "files": i.save_begin if i else None,
                        "agent": i.agent if i else None, "ota_flashed": i.ota_flashed if i else None,
                        "capabilities": list(row.capabilities) if row else [], "labels": list(row.labels) if row else [],
                        "instance": row.instance if row else None, "last_seen": row.last_seen if row else None,
                        "release": None if row is None or row.release is None else
                        {"name": row.release[0], "version": row.release[1], "sha256": row.release[2],
                         "verified_at": row.release_verified_at}})
        return {"devices": out, "refused": list(self.registry.refused), "instance": self.instance}


class ServerThread:
    """A CloudServer on its own event loop thread: start() returns once it listens."""

    def __init__(self, server: CloudServer) -> None:
        self.server = server
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="sparkflash-cloud", daemon=True)

    def _main(self) -> None:
        asyncio.run(self._amain())

    async def _amain(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as e:  # reported by start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.server.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        loop, stop = self.server.loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
