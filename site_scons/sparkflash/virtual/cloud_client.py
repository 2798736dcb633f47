"""The virtual Core's cloud connection: what the firmware does, over a real TCP socket.

It reads the server key (0x1000) and address (0x1180) from its own external flash,
handshakes with its own key (0x2000), says Hello, answers pings, runs OTA transfers into
its flash model through `protocols.ota_receiver`, answers our Checksum request, pings
when idle, resets after a firmware update (the bootloader install is `CoreState.reset`)
and reconnects after any drop.

Options (`core.options.extra`):
    cloud_dialect       "os" (default: Device OS-like, fast OTA) or "ccl" (0.3.x-like, stop-and-wait)
    cloud_time_scale    multiply the device timers (3 s re-request, 30 s watchdog, 15 s ping)
    cloud_reconnect_s   pause before reconnecting (default 0.2)
    cloud_corrupt_chunk flip a data byte of the Nth chunk received (0-based), as a radio bit error
    cloud_product_id    Hello product id (default ours, 0x5346; 0xFFFF acts as stock firmware)
"""

from __future__ import annotations

import hashlib
import logging
import select
import socket
import threading
import time
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.errors import SparkflashError
from sparkflash.protocols import coap, ota
from sparkflash.protocols.cloud_framing import DEVICE_BUFFER, Opener, Sealer
from sparkflash.protocols.cloud_handshake import NONCE_LEN, REPLY_LEN, device_hello, open_server_reply
from sparkflash.protocols.coap import Message, MessageIds
from sparkflash.protocols.ota_receiver import DeviceTiming, OtaReceiver
from sparkflash.virtual.faults import LinkDropped
from sparkflash.virtual.nor_flash import DeviceReset, NorFlash

if TYPE_CHECKING:
    from sparkflash.virtual.core import VirtualCore

__all__ = ["CloudClient", "FlashStore"]

log = logging.getLogger("sparkflash.virtual.cloud")
PRODUCT_ID = 0x5346  # sparkflash device firmware; see cloud.session.SPARKFLASH_PRODUCT_ID
IDLE_PING_S, PING_GRACE_S = 15.0, 10.0
KEY_SECTORS = (0x1000, 0x3000)  # the 4 KB sectors holding server key + address (0x1000) and device key (0x2000)


class FlashStore:
    """`FlashTarget` over the core's two NorFlash images (absolute addresses pick the memory).

    Over the air it only ever erases and programs external flash, and never the key sectors
    (server key and address at 0x1000, device key at 0x2000): a bad transfer must not be able
    to cut the device off from its cloud.
    """

    def __init__(self, internal: NorFlash, external: NorFlash, keys: tuple[int, int] = KEY_SECTORS) -> None:
        self.internal, self.external, self.keys = internal, external, keys

    def _touches_keys(self, start: int, end: int) -> bool:
        return start < self.keys[1] and end > self.keys[0]

    def memory(self, address: int, size: int) -> NorFlash | None:
        for f in (self.external, self.internal):
            if f.base <= address and address + size <= f.base + f.size:
                return f
        return None

    def erase(self, address: int, size: int) -> bool:
        f = self.memory(address, max(size, 1))
        if f is not self.external:  # OTA only ever erases external flash
            return False
        starts = range(f.sector_start(address), address + max(size, 1), f.sector_size)
        if any(f.is_protected(a) for a in starts) or self._touches_keys(starts[0], starts[-1] + f.sector_size):
            return False
        return all(f.erase_sector(a) for a in starts)

    def write(self, address: int, data: bytes) -> bool:
        f = self.memory(address, len(data))
        if f is not self.external or self._touches_keys(address, address + len(data)):
            return False
        f.program(address, data)
        return f.read(address, len(data)) == data

    def sector_start(self, address: int) -> int:
        return self.external.sector_start(address)

    def digest(self, address: int, size: int) -> tuple[int, bytes] | None:
        f = self.memory(address, size)
        if f is None:
            return None
        data = f.read(address, size)
        return ota.crc32(data), hashlib.sha256(data).digest()


class CloudClient:
    def __init__(self, core: VirtualCore) -> None:
        self.core = core
        extra = core.options.extra
        self.dialect = str(extra.get("cloud_dialect", "os"))
        self.scale = float(extra.get("cloud_time_scale", 1.0))
        self.reconnect_s = float(extra.get("cloud_reconnect_s", 0.2))
        self.corrupt_chunk: int | None = extra.get("cloud_corrupt_chunk")
        self.product_id = int(extra.get("cloud_product_id", PRODUCT_ID))
        self.store = FlashStore(core.state.internal, core.state.external)
        self.connections = 0
        self.chunks_seen = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name=f"cloud-{core.state.info['device_id']}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._close()
        self._thread.join(10)

    def _close(self) -> None:
        s, self._sock = self._sock, None
        self.connected.clear()
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except (OSError, LinkDropped, SparkflashError, DeviceReset, ValueError) as e:
                log.info("core %s: cloud connection ended: %s", self.core.state.info["device_id"], e)
            self._close()
            self._stop.wait(self.reconnect_s)

    # -- I/O helpers ---------------------------------------------------------------------
    def _recv(self, timeout: float | None) -> bytes:
        sock = self._sock
        if sock is None:
            raise ConnectionError("stopped")
        if timeout is not None:
            r, _, _ = select.select([sock], [], [], max(0.0, timeout))
            if not r:
                return b""
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        return self.core.options.faults.on_rx(data)

    def _recv_exact(self, n: int, timeout: float = 20.0) -> bytes:
        buf = b""
        end = time.monotonic() + timeout
        while len(buf) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"handshake: {len(buf)}/{n} bytes in {timeout:g} s")
            buf += self._recv(left)
        if len(buf) > n:
            raise ValueError("server sent more than the handshake step")
        return buf

    def _send(self, msgs: list[Message]) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionError("stopped")
        for m in msgs:
            sock.sendall(self._sealer.seal(coap.encode(m)))  # prefix + body in one write

    # -- the connection --------------------------------------------------------------------
    def _session(self) -> None:
        st = self.core.state
        der, host, port = st.server()
        server_key = serialization.load_der_public_key(der)
        assert isinstance(server_key, rsa.RSAPublicKey)
        device_key = st.device_private_key()
        self._sock = socket.create_connection((host or "device.spark.io", port), timeout=20)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        nonce = self._recv_exact(NONCE_LEN)
        self._sock.sendall(device_hello(server_key, nonce, st.device_id, device_key if self.dialect == "os" else None))
        session = open_server_reply(device_key, server_key, self._recv_exact(REPLY_LEN))
        self._sealer = Sealer(session.key, session.iv)
        opener = Opener(session.key, session.iv, max_len=DEVICE_BUFFER)
        ids = MessageIds(session.device_mid_start, session.device_token_start)
        flags = 1 if st.info["flags"].get("ota_flashed") else 0
        hello = (self.product_id.to_bytes(2, "big") + int(st.info.get("firmware_version", 0xFFFF)).to_bytes(2, "big")
                 + bytes([0, flags]))
        if self.dialect == "os":
            hello += b"\x00\x00"  # platform id 0: Core
        self._send([Message(coap.NON, coap.POST, ids.next_mid(), b"", ((coap.URI_PATH, b"h"),), hello)])
        timing = DeviceTiming().scaled(self.scale)
        rx = OtaReceiver(self.store, ids, dialect=self.dialect, timing=timing)
        self.connected.set()
        last_rx = time.monotonic()
        pinged = False
        while not self._stop.is_set():
            now = time.monotonic()
            deadlines = [last_rx + (IDLE_PING_S + (PING_GRACE_S if pinged else 0)) * self.scale]
            if rx.next_deadline is not None:
                deadlines.append(rx.next_deadline)
            data = self._recv(min(deadlines) - now)
            now = time.monotonic()
            if data:
                last_rx, pinged = now, False
                opener.receive_data(data)
                while (raw := opener.next_message()) is not None:
                    if self._dispatch(coap.decode(raw), rx, ids, now):
                        return
            self._send(rx.on_timeout(now))
            if rx.finished is not None and rx.finished.watchdog:
                raise DeviceReset("update watchdog: no progress for 30 s")
            if not rx.updating and now >= last_rx + IDLE_PING_S * self.scale:
                if pinged:
                    raise TimeoutError("no answer to our ping")
                self._send([Message(coap.CON, coap.EMPTY, ids.next_mid())])
                pinged = True

    def _dispatch(self, m: Message, rx: OtaReceiver, ids: MessageIds, now: float) -> bool:
        """Handle one server message; True when the device resets (connection ends)."""
        st = self.core.state
        if m.code == coap.POST and m.path == "h":  # server Hello: the "just flashed" flag is reported once
            if st.info["flags"].get("ota_flashed"):
                st.info["flags"]["ota_flashed"] = False
                st.save()
            return False
        if m.type == coap.CON and m.code == coap.EMPTY:
            self._send([ota.empty_ack(m.mid)])
            return False
        if m.code == coap.GET and m.path == "x":
            self._send([self._checksum(m)])
            return False
        if rx.handles(m):
            if m.code == coap.POST and m.path == "c":
                m = self._maybe_corrupt(m)
            rx.finished = None
            self._send(rx.receive(m, now))
            if rx.finished is not None and rx.finished.firmware:
                st.info["flags"]["ota_pending"] = True
                st.save()
                self._close()
                st.reset()  # the bootloader copies the OTA slot into the application area
                return True
            return False
        if m.type == coap.CON:
            self._send([ota.empty_ack(m.mid)])
        return False

    def _checksum(self, m: Message) -> Message:
        address, size = ota.parse_checksum_request(m)
        d = self.store.digest(address, size)
        if d is None:
            return Message(coap.ACK, coap.BAD_REQUEST, m.mid, m.token)
        return ota.checksum_reply(m, d[0], d[1])

    def _maybe_corrupt(self, m: Message) -> Message:
        n, self.chunks_seen = self.chunks_seen, self.chunks_seen + 1
        if self.corrupt_chunk is None or n != self.corrupt_chunk or not m.payload:
            return m
        p = bytearray(m.payload)
        p[len(p) // 2] ^= 0x01
        return Message(m.type, m.code, m.mid, m.token, m.options, bytes(p))
