"""One connected Core on the server: handshake, framed CoAP, and the exchanges we run on it.

The asyncio driver around the pure protocol modules: it reads exactly 256 bytes for the
handshake (the Node server trusted one socket read), writes each frame in one call (a Core
cannot cope with a split length prefix), answers pings, and runs at most one OTA transfer
or checksum request at a time, feeding the `OtaSender` device messages and deadlines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from sparkflash.cloud.limits import Limits
from sparkflash.cloud.rsa_pool import RsaPool
from sparkflash.errors import DeviceGone, RemoteProtocolError, TransportTimeout
from sparkflash.protocols import coap, ota
from sparkflash.protocols.cloud_framing import DEVICE_BUFFER, Opener, Sealer
from sparkflash.protocols.cloud_handshake import (
    HELLO_LEN,
    NONCE_LEN,
    SESSION_LEN,
    device_public_spki,
)
from sparkflash.protocols.coap import Message, MessageIds

__all__ = ["AGENT_CAPS", "AGENT_FUNCTION", "AGENT_RESULT", "DeviceInfo", "DeviceSession", "SessionHost"]

log = logging.getLogger("sparkflash.cloud")
HANDSHAKE_S = 30.0
# The device agent's cloud interface (docs/ota.md): a function that computes a digest into
# a string variable, and an optional variable of capability words (e.g. "save").
AGENT_FUNCTION, AGENT_RESULT, AGENT_CAPS = "sfdigest", "sfresult", "sfcaps"


@dataclass
class DeviceInfo:
    """What the device is, from what it really did: handshake, Hello, Describe, registration.

    The product id is kept for display only: any application can claim any value.
    """

    device_id: str
    generation: str  # "os" (214-byte handshake, Device OS) or "ccl" (52 bytes: 0.3.x / flasher_additions)
    product_id: int = 0xFFFF
    firmware_version: int = 0xFFFF
    ota_flashed: bool = False  # Hello flag bit 0: this boot follows a successful OTA install
    platform_id: int | None = None
    hello_len: int = 0
    save_begin_declared: bool = False  # registered with the save_begin property
    described: bool = False
    functions: tuple[str, ...] = ()
    variables: dict[str, int] = field(default_factory=dict)
    agent_caps: frozenset[str] = frozenset()

    @property
    def fast(self) -> bool:
        return self.generation == "os"

    @property
    def agent(self) -> bool:
        """Our device agent answers digests (its function and result variable are in Describe)."""
        return AGENT_FUNCTION in self.functions and AGENT_RESULT in self.variables

    @property
    def save_begin(self) -> bool:
        """SaveBegin stores a file: only 0.3.x-protocol firmware built with flasher_additions.

        Never true for Device OS, which takes POST /s for a firmware update."""
        return self.generation == "ccl" and (self.save_begin_declared or "save" in self.agent_caps)


class SessionHost(Protocol):
    """What a session needs from the server that accepted it, and all it reports back.

    Sessions know nothing else of the server (no import of it): the server implements this."""

    @property
    def limits(self) -> Limits: ...

    @property
    def rsa(self) -> RsaPool: ...

    async def registered(self, device_id: str) -> tuple[RSAPublicKey, dict[str, Any]] | None:
        """The registered key of a device and what the operator declared for it (e.g. save_begin);
        None if it is not registered."""

    def refuse(self, device_id: str, peer: str, reason: str, offered_der: bytes | None = None) -> None:
        """A handshake refused; `offered_der` is the key a Device OS Core offered (kept for approval if allowed)."""

    def attach(self, session: DeviceSession) -> None:
        """The session finished its handshake and Hello: the device is reachable through it."""

    def detach(self, session: DeviceSession) -> None:
        """The session ended."""


class DeviceSession:
    def __init__(self, server: SessionHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.peer = "{}:{}".format(*writer.get_extra_info("peername")[:2])
        self.info: DeviceInfo | None = None
        self.closed = asyncio.Event()
        self.ids = MessageIds(secrets.randbelow(0xFFFF) + 1)
        self._sender: ota.OtaSender | None = None
        self._wake = asyncio.Event()
        self._waiting: dict[bytes, asyncio.Future[Message]] = {}
        self._exchange = asyncio.Lock()
        self.bytes_out = 0

    # -- connection -------------------------------------------------------------------
    async def run(self) -> None:
        try:
            if await self._handshake():
                self.server.attach(self)
                await self._read_loop()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as e:
            log.info("device %s (%s): connection ended: %s", self.info.device_id if self.info else "?", self.peer,
                     e or type(e).__name__)
        except RemoteProtocolError as e:
            log.warning("device %s (%s): %s", self.info.device_id if self.info else "?", self.peer, e)
        finally:
            self.close()

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self._wake.set()
            for f in self._waiting.values():
                if not f.done():
                    f.set_exception(DeviceGone(f"device {self.info.device_id if self.info else '?'}: connection lost"))
            self.writer.close()
            self.server.detach(self)

    async def _handshake(self) -> bool:
        nonce = secrets.token_bytes(NONCE_LEN)
        self.writer.write(nonce)
        limit = self.server.limits.handshake_s
        block = await asyncio.wait_for(self.reader.readexactly(HELLO_LEN), limit)
        hello = await self.server.rsa.open_hello(nonce, block)
        device = hello.device_id.hex()
        reg = await self.server.registered(device)
        if reg is None:
            self.server.refuse(device, self.peer, "not registered", hello.public_key_der)
            return False
        pub, props = reg
        if hello.public_key_der is not None and hello.public_key_der != device_public_spki(pub):
            self.server.refuse(device, self.peer, "offered a key that differs from the registered one")
            return False
        material = secrets.token_bytes(SESSION_LEN)
        self.writer.write(await self.server.rsa.reply(pub, material))
        iv = material[16:32]
        self._opener = Opener(material[:16], iv, max_len=self.server.limits.frame)
        self._sealer = Sealer(material[:16], iv, max_len=DEVICE_BUFFER - 18)
        m = await asyncio.wait_for(self._next_message(), limit)
        if m.code != coap.POST or m.path != "h":
            raise RemoteProtocolError(f"device {device}: first message {coap.code_str(m.code)} /{m.path}, expected Hello")
        p = m.payload
        self.info = DeviceInfo(device, hello.generation, hello_len=len(p),
                               save_begin_declared=bool(props.get("save_begin")))
        if (len(p) >= 8) != (hello.generation == "os"):
            log.warning("device %s: %d-byte Hello after a %s handshake", device, len(p), hello.generation)
        if len(p) >= 6:
            self.info.product_id = int.from_bytes(p[0:2], "big")
            self.info.firmware_version = int.from_bytes(p[2:4], "big")
            self.info.ota_flashed = bool(p[5] & 1)
        if len(p) >= 8:
            self.info.platform_id = int.from_bytes(p[6:8], "big")
        self.send([Message(coap.NON, coap.POST, self.ids.next_mid(), b"", ((coap.URI_PATH, b"h"),))])
        log.info("device %s connected from %s (%s, product 0x%04x%s)", device, self.peer, hello.generation,
                 self.info.product_id, ", just flashed" if self.info.ota_flashed else "")
        return True

    async def _next_message(self) -> Message:
        while True:
            raw = self._opener.next_message()
            if raw is not None:
                return coap.decode(raw)
            data = await self.reader.read(4096)
            if not data:
                raise ConnectionError("closed by the device")
            self._opener.receive_data(data)

    def send(self, msgs: list[Message]) -> None:
        """Each frame stays whole (prefix + body); a batch goes out in one write (fast OTA: all chunks)."""
        if not msgs:
            return
        data = b"".join(self._sealer.seal(coap.encode(m)) for m in msgs)
        self.bytes_out += len(data)
        self.writer.write(data)

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                m = await asyncio.wait_for(self._next_message(), self.server.limits.idle_s)
            except TimeoutError:
                raise TimeoutError(f"nothing from the device for {self.server.limits.idle_s:g} s") from None
            if m.type == coap.CON and m.code == coap.EMPTY:  # ping
                self.send([ota.empty_ack(m.mid)])
                continue
            # piggybacked answers (ACK) and separate ones (a later NON/CON with the same token)
            fut = self._waiting.pop(m.token, None) if m.token and m.code != coap.EMPTY else None
            if fut is not None and not fut.done():
                fut.set_result(m)
                if m.type == coap.CON:
                    self.send([ota.empty_ack(m.mid)])
                continue
            if self._sender is not None:
                self.send(self._sender.receive(m, loop.time()))
                self._wake.set()
            elif m.type == coap.CON:
                self.send([ota.empty_ack(m.mid)])

    # -- exchanges ----------------------------------------------------------------------
    async def transfer(self, sender: ota.OtaSender, progress: Callable[[int], None]) -> None:
        """Run one transfer to its end; DeviceGone if the connection drops (the caller resumes)."""
        loop = asyncio.get_running_loop()
        async with self._exchange:
            self._sender, reported = sender, -1
            try:
                self.send(sender.start(loop.time()))
                while not sender.finished:
                    if self.closed.is_set():
                        raise DeviceGone(f"device {self.device_id}: connection lost at chunk {sender.acked}/{sender.count}")
                    await self._drain()
                    delay = None if sender.next_deadline is None else max(0.0, sender.next_deadline - loop.time())
                    try:
                        await asyncio.wait_for(self._wake.wait(), delay)
                    except TimeoutError:
                        pass
                    self._wake.clear()
                    if not self.closed.is_set():
                        self.send(sender.on_timeout(loop.time()))
                    if sender.acked != reported:
                        reported = sender.acked
                        progress(reported)
                await self._drain()
            finally:
                self._sender = None

    async def _drain(self) -> None:
        try:
            await self.writer.drain()
        except ConnectionError:  # a firmware update ends with the device resetting: not an error by itself
            self.close()

    async def request(self, m: Message, timeout: float) -> Message:
        """Send a CON request, wait for its piggybacked answer (matched by token)."""
        async with self._exchange:
            fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            self._waiting[m.token] = fut
            self.send([m])
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise TransportTimeout(f"device {self.device_id}: no answer to {coap.code_str(m.code)} /{m.path} "
                                       f"in {timeout:g} s") from None
            finally:
                self._waiting.pop(m.token, None)

    async def describe(self, timeout: float = 10.0) -> None:
        """GET /d once per connection: the application's functions and variables (all generations answer)."""
        assert self.info is not None
        if self.info.described:
            return
        m = Message(coap.CON, coap.GET, self.ids.next_mid(), self.ids.next_token(), ((coap.URI_PATH, b"d"),))
        reply = await self.request(m, timeout)
        if reply.code != coap.CONTENT:
            raise RemoteProtocolError(f"device {self.device_id}: Describe answered {coap.code_str(reply.code)}")
        try:
            doc = json.loads(reply.payload.rstrip(b"\x00").decode("utf-8", "replace") or "{}")
        except ValueError as e:
            raise RemoteProtocolError(f"device {self.device_id}: Describe reply is not JSON ({e})") from None
        f = doc.get("f", []) if isinstance(doc, dict) else []
        v = doc.get("v", {}) if isinstance(doc, dict) else {}
        self.info.functions = tuple(str(x) for x in f if isinstance(x, str)) if isinstance(f, list) else ()
        self.info.variables = {str(k): int(t) for k, t in v.items() if isinstance(t, int)} if isinstance(v, dict) else {}
        self.info.described = True
        if AGENT_CAPS in self.info.variables:
            self.info.agent_caps = frozenset((await self.variable(AGENT_CAPS)).decode("ascii", "replace").split())

    async def call_function(self, key: str, arg: str, timeout: float = 30.0) -> int:
        """POST /f/KEY?ARG; the device ACKs at once, then sends the int return value (same token)."""
        if not re.fullmatch(r"[A-Za-z0-9_]{1,12}", key) or len(arg) >= 64:
            raise ValueError(f"function {key!r}({arg!r}): key <= 12 characters, argument < 64")
        m = Message(coap.CON, coap.POST, self.ids.next_mid(), self.ids.next_token(),
                    ((coap.URI_PATH, b"f"), (coap.URI_PATH, key.encode()), (coap.URI_QUERY, arg.encode())))
        reply = await self.request(m, timeout)
        if reply.code != coap.CHANGED or len(reply.payload) < 4:
            raise RemoteProtocolError(f"device {self.device_id}: function {key} answered {coap.code_str(reply.code)}")
        return int.from_bytes(reply.payload[:4], "big", signed=True)

    async def variable(self, key: str, timeout: float = 10.0) -> bytes:
        """GET /v/KEY -> the raw value (a string variable: its bytes)."""
        m = Message(coap.CON, coap.GET, self.ids.next_mid(), self.ids.next_token(),
                    ((coap.URI_PATH, b"v"), (coap.URI_PATH, key.encode())))
        reply = await self.request(m, timeout)
        if reply.code != coap.CONTENT:
            raise RemoteProtocolError(f"device {self.device_id}: variable {key} answered {coap.code_str(reply.code)}")
        return reply.payload

    async def agent_sector_crcs(self, address: int, size: int) -> list[int]:
        """CRC-32 of each 4 KiB-sector piece of address..+size ("SUMS", in calls that fit the 622-byte variable)."""
        out: list[int] = []
        step = 60 * 4096  # 60 CRCs per reply: "OK 60 " + 60 x 9 characters < 622
        a, end = address, address + size
        while a < end:
            n = min(end, (a // 4096 + 60) * 4096) - a if a % 4096 else min(step, end - a)
            rc = await self.call_function(AGENT_FUNCTION, f"SUMS {a:x} {n:x}")
            text = (await self.variable(AGENT_RESULT)).rstrip(b"\x00").decode("ascii", "replace").strip()
            parts = text.split()
            if rc != 0 or len(parts) < 2 or parts[0] != "OK" or not parts[1].isdigit() \
                    or len(parts) != 2 + int(parts[1]) or not all(re.fullmatch(r"[0-9a-f]{8}", p) for p in parts[2:]):
                raise RemoteProtocolError(f"device {self.device_id}: agent sector CRCs of 0x{a:08x}+{n}: "
                                          f"return {rc}, result {text[:80]!r}")
            out += [int(p, 16) for p in parts[2:]]
            a += n
        return out

    async def agent_digest(self, address: int, size: int) -> tuple[int, str]:
        """The agent's CRC-32 and SHA-256 of address..+size (function sfdigest, variable sfresult)."""
        rc = await self.call_function(AGENT_FUNCTION, f"SUM {address:x} {size:x}")
        text = (await self.variable(AGENT_RESULT)).rstrip(b"\x00").decode("ascii", "replace").strip()
        mt = re.fullmatch(r"OK ([0-9a-f]{8}) ([0-9a-f]{64})", text)
        if rc != 0 or mt is None:
            raise RemoteProtocolError(f"device {self.device_id}: agent digest of 0x{address:08x}+{size}: "
                                      f"return {rc}, result {text[:80]!r}")
        return int(mt.group(1), 16), mt.group(2)

    @property
    def device_id(self) -> str:
        return self.info.device_id if self.info else "?"
