"""Light devices for load: many Spark Cores in one asyncio process, each with its flash in memory.

Each device does what a Core does on the cloud link, through the package's sans-I/O code:
the RSA handshake (`protocols.cloud_handshake`), AES framing (`cloud_framing`), CoAP
(`coap`), Hello, pings both ways, and OTA transfers into its memory through the same
`protocols.ota_receiver` the virtual Core uses, answering our Checksum request from what
it stored. It is a load generator, not a model of behaviour: the real device code and the
virtual Core stay the truth. What it keeps per device is small (no thread, a sparse
flash of the sectors written, one read buffer), so a thousand fit in one process.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.errors import SparkflashError
from sparkflash.protocols import coap, ota
from sparkflash.protocols import listening as L
from sparkflash.protocols.cloud_framing import DEVICE_BUFFER, Opener, Sealer
from sparkflash.protocols.cloud_handshake import (
    NONCE_LEN,
    REPLY_LEN,
    device_hello,
    open_server_reply,
)
from sparkflash.protocols.coap import Message, MessageIds
from sparkflash.protocols.ota_receiver import DeviceTiming, OtaReceiver

__all__ = ["LightDevice", "LightFleet", "LightOptions", "MemoryFlash", "device_ids", "public_pem"]

log = logging.getLogger("sparkflash.fleet.lightcore")
EXTERNAL_SIZE, SECTOR = 0x200000, 0x1000  # SST25VF016B: 2 MB in 4 KB sectors
KEY_SECTORS = (0x1000, 0x3000)  # server key + address, device key: never written over the air
PRODUCT_ID = 0x5346  # the product id our device firmware reports in its Hello


class MemoryFlash:
    """The external flash as a sparse dict of erased-then-written 4 KB sectors (NOR semantics:
    erase sets 0xFF, programming only clears bits). A `FlashTarget` for `OtaReceiver`."""

    def __init__(self) -> None:
        self.sectors: dict[int, bytearray] = {}
        self.write_counts: dict[int, int] = {}  # address of each write (an OTA chunk) -> how many times: tests see rewrites
        self.write_count = 0

    def sector_start(self, address: int) -> int:
        return address - address % SECTOR

    def _ok(self, start: int, end: int) -> bool:
        return 0 <= start < end <= EXTERNAL_SIZE and not (start < KEY_SECTORS[1] and end > KEY_SECTORS[0])

    def erase(self, address: int, size: int) -> bool:
        start, end = self.sector_start(address), address + max(size, 1)
        if not self._ok(start, end):
            return False
        for a in range(start, end, SECTOR):
            self.sectors.pop(a, None)  # erased = absent = all 0xFF
        return True

    def write(self, address: int, data: bytes) -> bool:
        if not self._ok(address, address + len(data)):
            return False
        self.write_counts[address] = self.write_counts.get(address, 0) + 1
        self.write_count += 1
        i = 0
        while i < len(data):
            a = address + i
            base = self.sector_start(a)
            sec = self.sectors.setdefault(base, bytearray(b"\xff" * SECTOR))
            n = min(len(data) - i, base + SECTOR - a)
            off = a - base
            for j in range(n):
                sec[off + j] &= data[i + j]
            i += n
        return self.read(address, len(data)) == data

    def read(self, address: int, size: int) -> bytes:
        out = bytearray()
        a, end = address, address + size
        while a < end:
            base = self.sector_start(a)
            n = min(end - a, base + SECTOR - a)
            sec = self.sectors.get(base)
            out += sec[a - base : a - base + n] if sec is not None else b"\xff" * n
            a += n
        return bytes(out)

    def digest(self, address: int, size: int) -> tuple[int, bytes] | None:
        if not 0 <= address < address + size <= EXTERNAL_SIZE:
            return None
        data = self.read(address, size)
        return ota.crc32(data), hashlib.sha256(data).digest()


@dataclass(frozen=True)
class LightOptions:
    dialect: str = "os"  # "os" (Device OS handshake, fast OTA) or "ccl" (0.3.x)
    product_id: int = PRODUCT_ID
    ping_s: float = 15.0  # idle time before the device pings the server, as a Core does
    ping_grace_s: float = 10.0  # no answer by then: the connection is dead
    reconnect_s: float = 0.5  # pause before reconnecting (with up to 50 % jitter)
    handshake_s: float = 20.0
    time_scale: float = 1.0  # multiplies the OTA receiver's 3-s re-request and 30-s watchdog
    save_begin: bool = False  # ccl: the flasher_additions library (SaveBegin stores files at any address)
    agent: bool = False  # our device agent's cloud function and variable (digests of its memory: "verified")
    write_s: float = 0.0  # time the flash takes to program one chunk (a real SST25 takes milliseconds): 0 = none


@dataclass
class Stats:
    connections: int = 0
    handshakes: int = 0
    handshake_s: float | None = None  # the last handshake, TCP connect to Hello sent
    pings_sent: int = 0
    pongs: int = 0  # our pings the server answered
    pings_answered: int = 0  # the server's pings we answered
    updates: int = 0  # transfers finished (firmware or file)
    last_error: str | None = None


class LightDevice:
    def __init__(self, device_id: str, key: rsa.RSAPrivateKey, server_key: rsa.RSAPublicKey,
                 address: tuple[str, int], options: LightOptions = LightOptions()) -> None:
        self.id, self.key, self.server_key, self.address, self.opt = device_id, key, server_key, address, options
        self.flash = MemoryFlash()
        self.stats = Stats()
        self.connected = asyncio.Event()
        self.ota_flashed = False  # reported once in the Hello after a firmware update
        self._writer: asyncio.StreamWriter | None = None
        self._stopping = False

    # -- life -------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, serve, reconnect after any drop, until `stop()`; back off (up to 64x) while
        connections keep failing before the handshake completes."""
        failures = 0
        while not self._stopping:
            before = self.stats.handshakes
            try:
                await self._session()
            except (OSError, EOFError, SparkflashError, asyncio.IncompleteReadError, TimeoutError, ValueError) as e:
                self.stats.last_error = f"{type(e).__name__}: {e}"
                log.debug("device %s: connection ended: %s", self.id, self.stats.last_error)
            finally:
                self._close()
            failures = 0 if self.stats.handshakes > before else failures + 1
            if not self._stopping:
                await asyncio.sleep(self.opt.reconnect_s * 2 ** min(failures, 6) * (1 + random.random() / 2))

    def stop(self) -> None:
        self._stopping = True
        self._close()

    def drop(self) -> None:
        """Cut the connection as a radio loss would; the device reconnects."""
        self._close()

    def _close(self) -> None:
        self.connected.clear()
        w, self._writer = self._writer, None
        if w is not None:
            w.close()

    # -- one connection ---------------------------------------------------------------
    async def _session(self) -> None:
        t0 = time.monotonic()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.address), self.opt.handshake_s)
        self._writer = writer
        if self._stopping:
            return
        self.stats.connections += 1
        nonce = await asyncio.wait_for(reader.readexactly(NONCE_LEN), self.opt.handshake_s)
        writer.write(device_hello(self.server_key, nonce, bytes.fromhex(self.id),
                                  self.key if self.opt.dialect == "os" else None))
        reply = await asyncio.wait_for(reader.readexactly(REPLY_LEN), self.opt.handshake_s)
        session = open_server_reply(self.key, self.server_key, reply)
        sealer, opener = Sealer(session.key, session.iv), Opener(session.key, session.iv, max_len=DEVICE_BUFFER)
        ids = MessageIds(session.device_mid_start, session.device_token_start)
        hello = self.opt.product_id.to_bytes(2, "big") + b"\xff\xff" + bytes([0, 1 if self.ota_flashed else 0])
        if self.opt.dialect == "os":
            hello += b"\x00\x00"  # platform 0: Core

        def send(msgs: Iterable[Message]) -> None:
            data = b"".join(sealer.seal(coap.encode(m)) for m in msgs)  # each frame whole, in one write
            if data:
                writer.write(data)

        send([Message(coap.NON, coap.POST, ids.next_mid(), b"", ((coap.URI_PATH, b"h"),), hello)])
        self.stats.handshake_s = time.monotonic() - t0
        self.stats.handshakes += 1
        rx = OtaReceiver(self.flash, ids, dialect=self.opt.dialect, timing=DeviceTiming().scaled(self.opt.time_scale),
                         save_begin=self.opt.save_begin)
        self.connected.set()
        loop = asyncio.get_running_loop()
        last_rx, ping_mid = loop.time(), None
        while not self._stopping:
            now = loop.time()
            deadline = last_rx + self.opt.ping_s + (self.opt.ping_grace_s if ping_mid is not None else 0.0)
            if rx.next_deadline is not None:
                deadline = min(deadline, rx.next_deadline)
            try:
                data = await asyncio.wait_for(reader.read(4096), max(0.0, deadline - now))
            except TimeoutError:
                data = None
            now = loop.time()
            if data is not None:
                if not data:
                    raise EOFError("closed by the server")
                last_rx = now
                opener.receive_data(data)
                written = self.flash.write_count
                while (raw := opener.next_message()) is not None:
                    m = coap.decode(raw)
                    if m.type == coap.ACK and m.code == coap.EMPTY and m.mid == ping_mid:
                        self.stats.pongs += 1
                        ping_mid = None
                        continue
                    if self._dispatch(m, rx, send, now):
                        return  # firmware installed: the device resets
                if self.opt.write_s and self.flash.write_count > written:  # programming: nothing else meanwhile
                    await asyncio.sleep(self.opt.write_s * (self.flash.write_count - written))
            send(rx.on_timeout(now))
            if rx.finished is not None and rx.finished.watchdog:
                raise TimeoutError("update watchdog: no progress")
            if not rx.updating and now >= last_rx + self.opt.ping_s:
                if ping_mid is not None and now >= last_rx + self.opt.ping_s + self.opt.ping_grace_s:
                    raise TimeoutError("no answer to our ping")
                if ping_mid is None:
                    ping_mid = ids.next_mid()
                    send([Message(coap.CON, coap.EMPTY, ping_mid)])
                    self.stats.pings_sent += 1
            await writer.drain()

    def _dispatch(self, m: Message, rx: OtaReceiver, send: Callable[[Iterable[Message]], None], now: float) -> bool:
        """One server message; True when the device resets after a firmware update."""
        if m.code == coap.POST and m.path == "h":
            self.ota_flashed = False  # the server saw the flag
            return False
        if m.type == coap.CON and m.code == coap.EMPTY:
            send([ota.empty_ack(m.mid)])
            self.stats.pings_answered += 1
            return False
        if m.code == coap.GET and m.path == "d":  # Describe: the agent's function and variable, or nothing
            body = b'{"f":["sfdigest"],"v":{"sfresult":4}}' if self.opt.agent else b'{"f":[],"v":{}}'
            send([Message(coap.ACK, coap.CONTENT, m.mid, m.token, payload=body)])
            return False
        segs = [v.decode("latin-1") for n, v in m.options if n == coap.URI_PATH]
        if self.opt.agent and m.code == coap.POST and segs == ["f", "sfdigest"] and m.queries():
            rc = self._agent(m.queries()[0].decode("ascii", "replace"))
            send([ota.empty_ack(m.mid),
                  Message(coap.NON, coap.CHANGED, rx.ids.next_mid(), m.token, payload=rc.to_bytes(4, "big", signed=True))])
            return False
        if self.opt.agent and m.code == coap.GET and segs == ["v", "sfresult"]:
            send([Message(coap.ACK, coap.CONTENT, m.mid, m.token, payload=self._result)])
            return False
        if m.code == coap.GET and m.path == "x":
            address, size = ota.parse_checksum_request(m)
            d = self.flash.digest(address, size)
            send([ota.checksum_reply(m, d[0], d[1]) if d else Message(coap.ACK, coap.BAD_REQUEST, m.mid, m.token)])
            return False
        if rx.handles(m):
            rx.finished = None
            send(rx.receive(m, now))
            if rx.finished is not None:
                self.stats.updates += 1
                if rx.finished.firmware:
                    self.ota_flashed = True  # the bootloader would now copy the slot; we keep it in memory
                    return True
            return False
        if m.type == coap.CON:
            send([ota.empty_ack(m.mid)])
        return False


    _result = b"ERR 4"
    _pending = ""  # a "+" piece of the next agent command (docs/device-agent.md §6)
    _record: tuple[str, str, str] | None = None  # the release record (REC / REC SET), in memory

    def _agent(self, arg: str) -> int:
        """The agent's sfdigest over the in-memory flash: SUM, SUMS (4 KiB pieces), REC, REC SET, "+" pieces."""
        if arg.startswith("+"):
            self._pending = (self._pending + arg[1:])[: L.MAX_LINE + 1]
            return self._reply(L.ok())
        line, self._pending = self._pending + arg, ""
        reader = L.CommandReader()
        reader.receive_data(line.encode("latin-1", "replace")[: L.MAX_LINE + 1] + b"\n")
        req = reader.next_request()
        if isinstance(req, L.RecordGet):
            return self._reply(L.ok(*(self._record or ("-",))))
        if isinstance(req, L.RecordSet):
            self._record = (req.name, req.version, req.sha256.lower())
            return self._reply(L.ok())
        if not isinstance(req, (L.Checksum, L.SectorSums)):
            return self._reply(L.err(L.ERR_SYNTAX, "unknown command"))
        address, size = req.address, req.length
        if not (size and 0 <= address < address + size <= EXTERNAL_SIZE):
            return self._reply(L.err(L.ERR_RANGE, "not inside the external flash"))
        if isinstance(req, L.Checksum):
            d = self.flash.digest(address, size)
            assert d is not None
            return self._reply(L.ok(f"{d[0]:08x}", d[1].hex()))
        crcs = [f"{ota.crc32(self.flash.read(a, n)):08x}" for a, n in L.sector_pieces(address, size)]
        if 9 * len(crcs) + 10 > 622:  # the string variable's limit on a Core
            return self._reply(L.err(L.ERR_RANGE, "more sector CRCs than the variable holds"))
        return self._reply(L.ok(str(len(crcs)), *crcs))

    def _reply(self, line: bytes) -> int:
        """Keep the reply (without CR LF) for sfresult; the function returns its ERR code or 0."""
        self._result = line.rstrip(b"\r\n")
        head = self._result.split(b" ", 2)
        return int(head[1]) if head[0] == b"ERR" and len(head) > 1 and head[1].isdigit() else 0


def device_ids(n: int, prefix: str = "5f") -> list[str]:
    """n distinct 24-hex ids, `prefix` + a counter (so a load run's devices are easy to tell apart)."""
    width = 24 - len(prefix)
    return [f"{prefix}{i:0{width}x}" for i in range(n)]


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class LightFleet:
    """Many light devices on one event loop. Keys come from a small pool (RSA-1024 generation is
    the slow part of making a device; the server cannot tell keys shared between ids apart)."""

    server_key: rsa.RSAPublicKey
    address: tuple[str, int]
    n: int
    options: LightOptions = LightOptions()
    key_pool: int = 4
    prefix: str = "5f"
    devices: list[LightDevice] = field(default_factory=list)

    def __post_init__(self) -> None:
        keys = [rsa.generate_private_key(public_exponent=65537, key_size=1024) for _ in range(max(1, self.key_pool))]
        self.devices = [LightDevice(d, keys[i % len(keys)], self.server_key, self.address, self.options)
                        for i, d in enumerate(device_ids(self.n, self.prefix))]
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, devices_dir: Path) -> None:
        """Write each device's key as DIR/<id>.pub.pem, the layout `sparkflash cloud serve --devices` reads
        (with DIR/<id>.json declaring SaveBegin when the devices have it, as `cloud register --save-begin`)."""
        devices_dir.mkdir(parents=True, exist_ok=True)
        pems: dict[int, bytes] = {}
        for d in self.devices:
            pem = pems.setdefault(id(d.key), public_pem(d.key))
            (devices_dir / f"{d.id}.pub.pem").write_bytes(pem)
            if d.opt.save_begin:
                (devices_dir / f"{d.id}.json").write_text('{"save_begin": true}\n')

    def start(self, stagger_s: float = 0.0) -> None:
        """Start every device (optionally spread over `stagger_s`)."""
        async def delayed(d: LightDevice, delay: float) -> None:
            if delay:
                await asyncio.sleep(delay)
            await d.run()

        for i, d in enumerate(self.devices):
            self._tasks.append(asyncio.create_task(delayed(d, stagger_s * i / max(1, self.n)), name=f"light-{d.id}"))

    async def wait_connected(self, timeout: float) -> int:
        """Wait until every device is connected (or the timeout); how many are."""
        end = asyncio.get_running_loop().time() + timeout
        while True:
            up = sum(d.connected.is_set() for d in self.devices)
            if up == self.n or asyncio.get_running_loop().time() >= end:
                return up
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        for d in self.devices:
            d.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        for t in self._tasks:
            if not t.done():
                t.cancel()
        self._tasks.clear()
