"""The virtual Core's DfuSe bootloader, reachable as STATE/dfu.sock (`--device virtual:STATE`).

Standard requests (descriptors, SET_INTERFACE) are answered with the Core's real
descriptors (bcdUSB 0x0100, alt strings padded to bLength 98); class requests go to
the sans-I/O `DfuseDevice`. With `dfu_poll` on, the Core's bwPollTimeout values are
announced and a request arriving before one has passed is held back, as the busy
Core NAKs EP0, so a host gains nothing by ignoring them. With it off the device
announces 0 ms (fast tests). Leave resets the core (after ~500 ms with dfu_poll).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import TYPE_CHECKING

from sparkflash.protocols.dfuse import ControlRequest
from sparkflash.protocols.dfuse_device import DfuseDevice
from sparkflash.protocols.usb_descriptors import (
    DT_CONFIG,
    DT_DEVICE,
    DT_STRING,
    GET_DESCRIPTOR,
    SET_INTERFACE,
    encode_config,
    encode_device,
    encode_string,
)
from sparkflash.transports.dfu_socket import ACK, REPLY, REQUEST, SOCKET_NAME, STALLED, recv_exact, unix_path
from sparkflash.virtual.faults import LinkDropped
from sparkflash.virtual.nor_flash import DeviceReset

if TYPE_CHECKING:
    from sparkflash.virtual.core import VirtualCore

__all__ = ["DfuEndpoint", "CORE_BCD_DEVICE", "CORE_TRANSFER_SIZE"]

CORE_BCD_DEVICE = 0x0200
CORE_TRANSFER_SIZE = 1024
CORE_DFU_ATTRIBUTES = 0x0B  # CanDnload | CanUpload | WillDetach, not manifestation tolerant
CORE_STRING_LENGTH = 98  # declared bLength of the alt strings, longer than the text
LEAVE_RESET_S = 0.5


class DfuEndpoint:
    def __init__(self, core: VirtualCore) -> None:
        self.core = core
        self.path = core.state.path / SOCKET_NAME
        self.device = self._fresh_device()
        self.alt = 0
        self.resets = 0  # leave requests served (tests observe them)
        self.reset_done = threading.Event()  # set after each leave's reset
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._thread: threading.Thread | None = None
        board = core.state.board
        vid, pid = board.usb["dfu"]
        mems = sorted(board.memories, key=lambda m: m.dfu_alt)
        self._alts = len(mems)
        self._strings = {1: "Particle", 2: "CORE DFU ", 3: core.state.info["device_id"]}
        self._strings.update({4 + i: m.dfu_layout for i, m in enumerate(mems)})
        self._device_desc = encode_device(vid, pid, CORE_BCD_DEVICE)
        self._config_desc = encode_config([4 + i for i in range(len(mems))], CORE_DFU_ATTRIBUTES, 255,
                                          CORE_TRANSFER_SIZE, 0x011A)

    def _fresh_device(self) -> DfuseDevice:
        return DfuseDevice(self.core.state.internal, self.core.state.external, poll=self.core.options.dfu_poll)

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with unix_path(self.path) as p:
            s.bind(p)
        s.listen(4)
        s.settimeout(0.1)
        self._listener = s
        self._thread = threading.Thread(target=self._serve, name="virtual-core-dfu", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        self.path.unlink(missing_ok=True)

    # -- serving ----------------------------------------------------------------
    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        busy_until = 0.0
        while not self._stop.is_set():
            if not select.select([conn], [], [], 0.2)[0]:
                continue
            try:
                head = recv_exact(conn, REQUEST.size)
                rt, rq, value, index, length = REQUEST.unpack(head) if head else (0, 0, 0, 0, 0)
                data = recv_exact(conn, length) if head and not rt & 0x80 and length else b""
            except OSError:
                return
            if not head or len(data) != (0 if rt & 0x80 else length):
                return
            wait = busy_until - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # EP0 NAKs while the Core is busy
            try:
                data = self.core.options.faults.on_rx(data) if data else data
                reply = self._handle(ControlRequest(rt, rq, value, index, data, length if rt & 0x80 else 0))
            except (LinkDropped, DeviceReset):
                self.device = self._fresh_device()  # cable pulled / brown-out: the device re-enumerates
                return
            poll = self.device.take_poll_ms()
            if poll:
                busy_until = time.monotonic() + poll / 1000
            out = REPLY.pack(STALLED, 0) if reply is None else REPLY.pack(ACK, len(reply)) + reply
            try:
                conn.sendall(out)
            except OSError:
                return
            if self.device.reset_requested:
                self._reset(conn)
                return

    def _reset(self, conn: socket.socket) -> None:
        """Leave: the Core resets ~500 ms after answering; the app runs, pending OTA is installed."""
        if self.core.options.dfu_poll:
            self._stop.wait(LEAVE_RESET_S)
        self.core.state.reset()
        self.resets += 1
        self.device = self._fresh_device()
        self.alt = 0
        self.reset_done.set()

    def _handle(self, req: ControlRequest) -> bytes | None:
        if req.bmRequestType == 0x80 and req.bRequest == GET_DESCRIPTOR:
            kind, index = req.wValue >> 8, req.wValue & 0xFF
            if kind == DT_DEVICE:
                desc = self._device_desc
            elif kind == DT_CONFIG and index == 0:
                desc = self._config_desc
            elif kind == DT_STRING and index == 0:
                desc = bytes([4, DT_STRING, 0x09, 0x04])  # English (US)
            elif kind == DT_STRING and index in self._strings:
                text = self._strings[index]
                desc = encode_string(text, CORE_STRING_LENGTH if index >= 4 else None)
            else:
                return None
            return desc[: req.length]
        if req.bmRequestType == 0x01 and req.bRequest == SET_INTERFACE:
            if req.wIndex != 0 or not 0 <= req.wValue < self._alts:
                return None
            self.alt = req.wValue
            return b""
        if req.wIndex != 0:
            return None
        return self.device.handle(req)
