"""The virtual Core's cloud connection: what the firmware does, over a real TCP socket.

It reads the server key (0x1000) and address (0x1180) from its own external flash,
reads its own key (0x2000) with the Core's fixed-offset reader (a key the Core misreads
fails the handshake here too), says Hello, answers pings, runs OTA transfers into its
flash model through `protocols.ota_receiver`, answers Describe, pings when idle, resets
after a firmware update (the bootloader install is `CoreState.reset`) and reconnects
after any drop. Like the real code it protects nothing over the air (the server refuses
key sectors), and an unknown request is ignored by the 0.3.x dialect but ends the
connection on Device OS.

In its default agent mode it also runs the device agent's cloud interface (docs/ota.md):
function `sfdigest` runs one agent line command ("SUM addr len", SUMS, REC, REC SET; "+"
pieces for a long one) into the string variable `sfresult`; variable `sfcaps` lists "save"
when the protocol library takes SaveBegin.

Options (`core.options.extra`):
    cloud_dialect       "os" (default: Device OS-like, fast OTA) or "ccl" (0.3.x-like, stop-and-wait)
    cloud_save_begin    ccl only: the flasher_additions library (SaveBegin stores files); default False
    cloud_agent         run the agent's function and variables (default True); False = stock firmware
    cloud_time_scale    multiply the device timers (3 s re-request, 30 s watchdog, 15 s ping)
    cloud_reconnect_s   pause before reconnecting (default 0.2)
    cloud_corrupt_chunk flip a data byte of the Nth chunk received (0-based), as a radio bit error
    cloud_product_id    Hello product id (default 0xFFFF; the server gives it no meaning)
"""

from __future__ import annotations

import hashlib
import json
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
from sparkflash.protocols import listening as L
from sparkflash.protocols import release_record as RR
from sparkflash.protocols.cloud_framing import DEVICE_BUFFER, Opener, Sealer
from sparkflash.protocols.cloud_handshake import (
    NONCE_LEN,
    REPLY_LEN,
    device_hello,
    open_server_reply,
)
from sparkflash.protocols.coap import Message, MessageIds
from sparkflash.protocols.core_keys import KEY_SLOT, core_read_private_key
from sparkflash.protocols.ota_receiver import DeviceTiming, OtaReceiver
from sparkflash.virtual.faults import LinkDropped
from sparkflash.virtual.nor_flash import DeviceReset, NorFlash
from sparkflash.virtual.serial_pty import record_get, record_set

if TYPE_CHECKING:
    from sparkflash.virtual.core import VirtualCore

__all__ = ["CloudClient", "FlashStore"]

log = logging.getLogger("sparkflash.virtual.cloud")
IDLE_PING_S, PING_GRACE_S = 15.0, 10.0
AGENT_FUNCTION, AGENT_RESULT, AGENT_CAPS = "sfdigest", "sfresult", "sfcaps"
TYPE_STRING = 4
# What each dialect classifies (code, first path character); anything else is "unknown".
KNOWN = {(coap.GET, "v"), (coap.GET, "d"), (coap.POST, "e"), (coap.POST, "E"), (coap.POST, "h"), (coap.POST, "f"),
         (coap.POST, "u"), (coap.POST, "c"), (coap.POST, "s"), (coap.PUT, "k"), (coap.PUT, "u"), (coap.PUT, "s")}


class FlashStore:
    """`FlashTarget` over the core's two NorFlash images (absolute addresses pick the memory).

    Over the air the device only erases and programs external flash (the OTA slot and
    files); like the real firmware it protects no sector there, keys included.
    """

    def __init__(self, internal: NorFlash, external: NorFlash) -> None:
        self.internal, self.external = internal, external

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
        if any(f.is_protected(a) for a in starts):
            return False
        return all(f.erase_sector(a) for a in starts)

    def write(self, address: int, data: bytes) -> bool:
        f = self.memory(address, len(data))
        if f is not self.external:
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


def _segments(m: Message) -> list[str]:
    return [v.decode("latin-1") for n, v in m.options if n == coap.URI_PATH]


def core_device_key(raw: bytes) -> rsa.RSAPrivateKey:
    """The device key as the Core's fixed-offset reader takes it from 0x2000 (ValueError if unusable)."""
    n, d, p, q, dp, dq, qp = core_read_private_key(raw)
    return rsa.RSAPrivateNumbers(p, q, d, dp, dq, qp, rsa.RSAPublicNumbers(65537, n)).private_key()


class CloudClient:
    def __init__(self, core: VirtualCore) -> None:
        self.core = core
        extra = core.options.extra
        self.dialect = str(extra.get("cloud_dialect", "os"))
        self.scale = float(extra.get("cloud_time_scale", 1.0))
        self.reconnect_s = float(extra.get("cloud_reconnect_s", 0.2))
        self.corrupt_chunk: int | None = extra.get("cloud_corrupt_chunk")
        self.product_id = int(extra.get("cloud_product_id", 0xFFFF))
        self.save_begin = bool(extra.get("cloud_save_begin", False)) and self.dialect == "ccl"
        self.agent = bool(extra.get("cloud_agent", True))
        self.result = b""
        self.pending = ""  # a "+" prefix of the next agent command
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
        device_key = core_device_key(st.external.read(0x2000, KEY_SLOT))
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
        rx = OtaReceiver(self.store, ids, dialect=self.dialect, timing=timing, save_begin=self.save_begin)
        self._ids = ids
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
        if m.code in (coap.GET, coap.POST, coap.PUT) and (m.code, m.path[:1]) not in KNOWN:
            if self.dialect == "os":  # Device OS v0.4.9 drops the connection (and any update with it)
                raise ConnectionError(f"unknown request {coap.code_str(m.code)} /{m.path}")
            return False  # 0.3.x: silently dropped
        if m.code == coap.GET and m.path == "d":
            self._send([self._describe(m)])
            return False
        if m.code == coap.POST and m.path == "f":
            self._send(self._function(m, ids))
            return False
        if m.code == coap.GET and m.path == "v":
            self._send([self._variable(m)])
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

    # -- the application: Describe, functions, variables (the agent's, in agent mode) ---------
    def _variables(self) -> dict[str, bytes]:
        if not self.agent:
            return {}
        # as the C agent: never empty (the real library sends an empty string as a bare payload marker)
        return {AGENT_RESULT: self.result, AGENT_CAPS: b"agent save" if self.save_begin else b"agent"}

    def _describe(self, m: Message) -> Message:
        funcs = [AGENT_FUNCTION] if self.agent else []
        body = json.dumps({"f": funcs, "v": {k: TYPE_STRING for k in self._variables()}}, separators=(",", ":"))
        return Message(coap.ACK, coap.CONTENT, m.mid, m.token, payload=body.encode())

    def _function(self, m: Message, ids: MessageIds) -> list[Message]:
        """Empty ACK at once, then the int return value as a separate NON 2.04 (the same token)."""
        parts = _segments(m)
        q = m.queries()
        rc = -1
        if self.agent and len(parts) == 2 and parts[1] == AGENT_FUNCTION and q:
            rc = self._sfdigest(q[0].decode("ascii", "replace"))
        ret = Message(coap.NON, coap.CHANGED, ids.next_mid(), m.token, payload=rc.to_bytes(4, "big", signed=True))
        return [ota.empty_ack(m.mid), ret]

    def _sfdigest(self, arg: str) -> int:
        """One agent line command (SUM, SUMS, REC, REC SET); its reply, without CR LF, is the result.

        As the C agent (docs/device-agent.md §6): "+text" is kept and prefixed to the next
        argument (a command longer than one argument); the return value is the ERR code or 0."""
        if arg.startswith("+"):
            if len(self.pending) + len(arg) - 1 > L.MAX_LINE:
                self.pending = ""
                return self._result(L.err(L.ERR_SYNTAX, "line longer than 160 characters"))
            self.pending += arg[1:]
            return self._result(L.ok())
        line, self.pending = self.pending + arg, ""
        if len(line) > L.MAX_LINE:
            return self._result(L.err(L.ERR_SYNTAX, "line longer than 160 characters"))
        reader = L.CommandReader()
        reader.receive_data(line.encode("latin-1", "replace") + b"\n")
        req = reader.next_request()
        if isinstance(req, L.Checksum) and self.store.memory(req.address, req.length) is not None:
            d = self.store.digest(req.address, req.length)
            assert d is not None
            return self._result(L.ok(f"{d[0]:08x}", d[1].hex()))
        if isinstance(req, L.SectorSums) and (f := self.store.memory(req.address, req.length)) is not None:
            pieces = L.sector_pieces(req.address, req.length)
            if 9 * len(pieces) + 10 > 622:  # the string variable's limit on a Core
                return self._result(L.err(L.ERR_RANGE, "more sector CRCs than the variable holds"))
            return self._result(L.ok(str(len(pieces)), *(f"{ota.crc32(f.read(a, n)):08x}" for a, n in pieces)))
        if isinstance(req, (L.Checksum, L.SectorSums)):
            return self._result(L.err(L.ERR_RANGE, "not inside one flash memory"))
        if isinstance(req, L.RecordGet):
            return self._result(record_get(self.core.state))
        if isinstance(req, L.RecordSet):
            return self._result(record_set(self.core.state, RR.Record(req.name, req.version, req.sha256)))
        if isinstance(req, L.BadLine):
            return self._result(L.err(req.code, req.text))
        if req is None:
            return self._result(L.err(L.ERR_SYNTAX, "empty command"))
        if isinstance(req, L.Save):
            return self._result(L.err(L.ERR_SYNTAX, "SAVE is a serial command"))
        return self._result(L.err(L.ERR_SYNTAX, "unknown command"))  # a stock key: serial only

    def _result(self, reply: bytes) -> int:
        self.result = reply.rstrip(b"\r\n")
        return int(self.result[4:5]) if self.result.startswith(b"ERR ") else 0

    def _variable(self, m: Message) -> Message:
        parts = _segments(m)
        v = self._variables().get(parts[1]) if len(parts) == 2 else None
        if v is None:  # the real code answers an unknown key with 4.04 Not Found
            return Message(coap.ACK, 0x84, m.mid, m.token)
        return Message(coap.ACK, coap.CONTENT, m.mid, m.token, payload=v)

    def _maybe_corrupt(self, m: Message) -> Message:
        n, self.chunks_seen = self.chunks_seen, self.chunks_seen + 1
        if self.corrupt_chunk is None or n != self.corrupt_chunk or not m.payload:
            return m
        p = bytearray(m.payload)
        p[len(p) // 2] ^= 0x01
        return Message(m.type, m.code, m.mid, m.token, m.options, bytes(p))
