"""The virtual Core's USB serial port: a pty serving listening mode and YMODEM receives.

The host opens STATE/tty (a symlink to the current /dev/pts/N; the path is also written to
STATE/serial.port), as it would open /dev/ttyACM0. A reset (after `f`, or the reset@N
fault) closes the pty and opens a new one behind the same symlink, as a real Core's USB
port disappears and re-enumerates. drop@N pulls the cable for good. Received files go
through the same NOR rules as the real chip: every touched 4 KiB sector is erased before
programming, bytes of it outside the destination are put back (our SAVE extension; stock
`f` only ever writes the OTA slot), and each chunk is read back before it is ACKed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import select
import termios
import threading
import time
import tty
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from sparkflash.errors import DeviceGone, ProtocolError, TransportTimeout
from sparkflash.protocols import listening as L
from sparkflash.protocols import release_record as RR
from sparkflash.protocols import ymodem as Y
from sparkflash.transports.drive import drive
from sparkflash.virtual.faults import Faults, LinkDropped
from sparkflash.virtual.nor_flash import DeviceReset, NorFlash

if TYPE_CHECKING:
    from sparkflash.virtual.core import VirtualCore
    from sparkflash.virtual.state import CoreState

__all__ = ["PORT_FILE", "PORT_LINK", "SerialEndpoint", "record_get", "record_set"]

PORT_LINK = "tty"  # STATE/tty -> /dev/pts/N
PORT_FILE = "serial.port"  # STATE/serial.port holds the path to open
BOOT_S = 0.2  # time a reset keeps the port away
AGENT_LINE = "sparkflash-agent 1"  # the capability line after `i` (docs/serial-protocol.md)
RECEIVER_TIMEOUTS = Y.ReceiverTimeouts(start=3.0, block=5.0)


class _Stopped(BaseException):
    """The endpoint is shutting down (not an error of the session)."""


class _Reboot(Exception):
    """The device resets itself (after a firmware update)."""


class _FlashFailed(Exception):
    """Erase/program/read-back failed; the session is cancelled with ERR 3."""


class _PtyLink:
    """`Link` over the pty master: the device's end of the USB serial line.

    Applies the link-rate model (each byte costs 10 bit times at `baud`, both directions)
    and the receive faults (corrupt a byte, drop the link)."""

    def __init__(self, master: int, wake: int, name: str, baud: int | None, faults: Faults) -> None:
        self.master, self.wake, self.name, self.baud, self.faults = master, wake, name, baud, faults
        self.dead = False  # after a simulated reset nothing more leaves the device
        self._rx_free = self._tx_free = 0.0

    def _pace(self, n: int, free_at: float) -> float:
        if not self.baud:
            return 0.0
        now = time.monotonic()
        done = max(now, free_at) + n * 10 / self.baud
        if done > now:
            time.sleep(done - now)
        return done

    def read(self, n: int, timeout: float) -> bytes:
        r, _, _ = select.select([self.master, self.wake], [], [], max(0.0, timeout))
        if self.wake in r:
            raise _Stopped()
        if not r:
            return b""
        try:
            data = os.read(self.master, n)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return b""
            raise DeviceGone(f"pty {self.name}: {e}") from e
        try:
            data = self.faults.on_rx(data)
        except LinkDropped:
            self.dead = True  # the cable is out: nothing we "send" arrives
            raise
        self._rx_free = self._pace(len(data), self._rx_free)
        return data

    def write(self, data: bytes) -> None:
        if self.dead:
            return
        self._tx_free = self._pace(len(data), self._tx_free)
        view, give_up = memoryview(data), time.monotonic() + 2.0
        while view:
            try:
                view = view[os.write(self.master, view):]
            except BlockingIOError:
                # Nobody reads the port: like a USB CDC write, give up after a while.
                if time.monotonic() > give_up:
                    return
                select.select([], [self.master], [], 0.05)
            except OSError as e:
                raise DeviceGone(f"pty {self.name}: {e}") from e

    def close(self) -> None:
        pass  # the endpoint owns the descriptors


class _FlashSink:
    """Receiver events -> flash writes at `address` (the device's FLASH_Begin/Update)."""

    def __init__(self, rx: Y.Receiver, flash: NorFlash, address: int, length: int | None, limit: int) -> None:
        self.rx, self.flash, self.address, self.length, self.limit = rx, flash, address, length, limit
        self.refusal: bytes | None = None  # the line to print after a rejected header
        self.file: Y.FileHeader | None = None
        self._erased: set[int] = set()

    def __call__(self, ev: object) -> None:
        if isinstance(ev, Y.FileHeader):
            self._header(ev)
        elif isinstance(ev, Y.FileData):
            self._write(self.address + ev.offset, ev.data)
        elif isinstance(ev, Y.FileEnd) and ev.size is not None and ev.received != ev.size:
            raise _FlashFailed(f"file ended after {ev.received} of {ev.size} bytes")

    def _header(self, ev: Y.FileHeader) -> None:
        if self.file is not None:
            self.refusal = L.err(L.ERR_TRANSFER, "one file per session")
        elif ev.size is None:
            self.refusal = L.err(L.ERR_SIZE, "the YMODEM header carries no file size")
        elif self.length is not None and ev.size != self.length:
            self.refusal = L.err(L.ERR_SIZE, f"file is {ev.size} bytes, SAVE announced {self.length}")
        elif ev.size > self.limit:
            self.refusal = (L.FW_TOO_BIG + "\r\n").encode()
        elif ev.size == 0:  # stock `f` (length None): the bootloader would install stale slot bytes
            self.refusal = L.err(L.ERR_SIZE, "an empty firmware image")
        if self.refusal is not None:
            self.rx.reject()
            return
        self.file, self.length = ev, ev.size
        self.rx.accept()

    def _write(self, addr: int, data: bytes) -> None:
        f, sector = self.flash, self.flash.sector_size
        assert self.length is not None
        lo_dest, hi_dest = self.address, self.address + self.length
        for s in range(f.sector_start(addr), addr + len(data), sector):
            if s in self._erased:
                continue
            self._erased.add(s)
            keep = f.read(s, sector)
            if not f.erase_sector(s):
                raise _FlashFailed(f"sector 0x{s:08x} is write-protected")
            lo, hi = max(s, lo_dest), min(s + sector, hi_dest)
            for start, part in ((s, keep[: lo - s]), (hi, keep[hi - s :])):
                if part.strip(b"\xff"):  # put back neighbours' bytes in a shared sector
                    f.program(start, part)
        f.program(addr, data)
        if f.read(addr, len(data)) != data:
            raise _FlashFailed(f"read-back mismatch at 0x{addr:08x}+{len(data)}")


def _record_sector(state: CoreState) -> bytes:
    area = state.board.memory("external").area("release_record")
    return state.external.read(area.start, area.size)


def record_get(state: CoreState) -> bytes:
    """The REC reply (also the agent's cloud function's, virtual/cloud_client.py)."""
    rec = RR.latest(_record_sector(state))
    return L.ok("-") if rec is None else L.ok(rec.name, rec.version, rec.sha256)


def record_set(state: CoreState, rec: RR.Record) -> bytes:
    """REC SET: append the record to the log (erase first when it is full), read it back; 3 tries."""
    area, f = state.board.memory("external").area("release_record"), state.external
    slot = RR.encode_slot(rec)
    for _ in range(3):
        at = RR.free_slot(_record_sector(state))
        if at is None:
            if not f.erase_sector(area.start):
                continue
            at = 0
        f.program(area.start + at, slot)
        if f.read(area.start + at, RR.SLOT) == slot:
            return L.ok()
    return L.err(L.ERR_FLASH, f"release record write/read-back failed at 0x{area.start:08x}")


class SerialEndpoint:
    """Listening mode on a pty, one thread; constructed by VirtualCore with the core."""

    def __init__(self, core: VirtualCore) -> None:
        self.core = core
        self.state = core.state
        self.port = str(self.state.path / PORT_LINK)
        self.pty: str | None = None  # current /dev/pts/N
        self.error: BaseException | None = None  # an unexpected crash of the serving thread
        self.resets = 0
        self._master = self._slave = -1
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._open_pty()
        (self.state.path / PORT_FILE).write_text(self.port + "\n")
        self._thread = threading.Thread(target=self._serve, name="virtual-core-serial", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(10)
        self._close_pty()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        (self.state.path / PORT_FILE).unlink(missing_ok=True)

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        fcntl.fcntl(master, fcntl.F_SETFL, fcntl.fcntl(master, fcntl.F_GETFL) | os.O_NONBLOCK)
        # We keep the slave open too: the master then never sees EIO when a host closes
        # the port, and bytes written meanwhile wait in the line, as on a UART.
        self._master, self._slave, self.pty = master, slave, os.ttyname(slave)
        tmp = self.state.path / f".{PORT_LINK}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(self.pty, tmp)
        os.replace(tmp, self.port)

    def _close_pty(self) -> None:
        Path(self.port).unlink(missing_ok=True)  # first, so no host opens a dying pty
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    # -- the device -----------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                link = _PtyLink(self._master, self._wake_r, self.pty or "", self.core.options.baud, self.core.options.faults)
                try:
                    self._listen(link)
                except (DeviceReset, _Reboot):
                    link.dead = True
                    self.resets += 1
                    self._close_pty()
                    self._boot()
                    if self._stopping.wait(BOOT_S):
                        return
                    self._open_pty()
        except (_Stopped, LinkDropped, DeviceGone):
            self._close_pty()  # cable pulled (or shutting down): the port is gone
        except Exception as e:  # noqa: BLE001 - keep the thread from dying silently
            self.error = e
            self._close_pty()

    def _boot(self) -> None:
        """The bootloader installs a pending OTA image; a reset fault during that copy just
        means another reset (the pending flag is still set, so the copy starts over)."""
        while True:
            try:
                self.state.reset()
                return
            except DeviceReset:
                self.resets += 1

    def _listen(self, link: _PtyLink) -> None:
        reader = L.CommandReader()
        while True:
            req = reader.next_request()
            if req is None:
                reader.receive_data(link.read(4096, 1.0))
            elif isinstance(req, L.Save):
                self._save(link, reader, req)
            elif isinstance(req, L.Key) and req.key == "f":
                self._firmware(link, reader)
            else:
                link.write(self._answer(req))

    def _answer(self, req: L.Request) -> bytes:
        did = self.state.info["device_id"]
        if isinstance(req, L.Key):  # agent mode: the stock id line, then our banner
            return f"{L.ID_TEXT}{did}\r\n{L.AGENT_BANNER}\r\n".encode()
        if isinstance(req, L.Identify):
            return L.ok(did)
        if isinstance(req, (L.Checksum, L.SectorSums)):
            flash = self._flash_for(req.address, req.length)
            if flash is None:
                return L.err(L.ERR_RANGE, f"0x{req.address:08x}+0x{req.length:x} is not inside one flash memory")
            if isinstance(req, L.SectorSums):
                pieces = L.sector_pieces(req.address, req.length)
                return L.ok(str(len(pieces)), *(f"{zlib.crc32(flash.read(a, n)):08x}" for a, n in pieces))
            data = flash.read(req.address, req.length)
            return L.ok(f"{zlib.crc32(data) & 0xFFFFFFFF:08x}", hashlib.sha256(data).hexdigest())
        if isinstance(req, L.RecordGet):
            return record_get(self.state)
        if isinstance(req, L.RecordSet):
            return record_set(self.state, RR.Record(req.name, req.version, req.sha256))
        assert isinstance(req, L.BadLine)
        return L.err(req.code, req.text)

    def _flash_for(self, address: int, length: int) -> NorFlash | None:
        for f in (self.state.internal, self.state.external):
            if f.base <= address and address + length <= f.base + f.size:
                return f
        return None

    def _receive(self, link: _PtyLink, reader: L.CommandReader, address: int, length: int | None,
                 limit: int) -> tuple[_FlashSink, bytes | None]:
        """One YMODEM file into external flash; (sink, failure line or None)."""
        rx = Y.Receiver(timeouts=RECEIVER_TIMEOUTS, start_tries=20)
        sink = _FlashSink(rx, self.state.external, address, length, limit)
        def handle(ev: object) -> None:
            try:
                sink(ev)
            except DeviceReset:
                link.dead = True  # a resetting device says nothing more, not even CAN
                raise

        try:
            reader.receive_data(drive(link, rx, handle, initial=reader.take_rest()))
        except _FlashFailed as e:
            return sink, L.err(L.ERR_FLASH, str(e))
        except (ProtocolError, TransportTimeout) as e:
            return sink, sink.refusal or L.err(L.ERR_TRANSFER, str(e))
        if sink.file is None:  # an empty batch: nothing was written
            return sink, L.err(L.ERR_SIZE, "no file in the batch")
        return sink, None

    def _save(self, link: _PtyLink, reader: L.CommandReader, req: L.Save) -> None:
        ext = self.state.board.memory("external")
        problem = L.save_range_error(ext, req.address, req.length, req.any_area)
        if problem:
            link.write(L.err(L.ERR_RANGE, problem))
            return
        link.write(L.ok())
        _, failure = self._receive(link, reader, req.address, req.length, ext.size)
        link.write(failure or L.ok(f"{req.length:x}"))

    def _firmware(self, link: _PtyLink, reader: L.CommandReader) -> None:
        """Stock `f`: the image goes to the OTA slot; then the bootloader installs it."""
        link.write((L.FW_PROMPT + "\r\n").encode())
        ota = self.state.board.memory("external").area("ota").start
        sink, failure = self._receive(link, reader, ota, None, self.state.board.firmware_max_size)
        if failure is not None:
            link.write(failure if sink.refusal else (L.FW_FAILED + "\r\n").encode())
            return
        f = sink.file
        assert f is not None
        link.write(f"\r\n{L.FW_DONE}\r\nName: {f.name}\r\nSize: {f.size} bytes\r\n{L.FW_RESTART}\r\n".encode())
        self.state.info["flags"]["ota_pending"] = True
        self.state.save()
        time.sleep(0.1)  # the Core resets ~100 ms after the message
        raise _Reboot()
