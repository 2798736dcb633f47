"""The virtual Core's `stock` serial mode: stock listening mode and the stock YMODEM receiver.

Selected by `CoreOptions.extra["serial_mode"]` = "stock" (listening mode: `i` prints the
id line only, `f` receives a firmware image into the OTA slot and resets) or
"stock-save" (an application whose loop() calls `System.serialSaveFile(&Serial, addr)`
with addr = `extra["stock_save_address"]`). It behaves like the flasher_additions
receiver (core-firmware 5e41341d6, ST AN2557 adapted; 2015: main/libraries/Ymodem/Ymodem.h
at d6252f6c2), which tests/serial/test_stock_differential.py runs side by side with it:

* no CRC check: only seq/~seq; a bad block or a stray byte answers 'C';
* a duplicate block (the sender lost our ACK) is NAKed: sequence numbers only;
* the header ACK comes after erasing ceil(size / 4 KiB) sectors from the address;
* whole 128/1024-byte blocks are programmed and read back (0x1A padding written);
* the size is decimal up to the first space (16 characters at most), the name is cut at
  256 characters, the 2014 cap is 0x1B000 bytes (2015: the OTA/user range rule);
* the 'C' prompt comes only when a 0.5 s receive timeout passes (0x100000 polls);
* after more than 5 consecutive errors once a session began: CAN CAN, failure.
"""

from __future__ import annotations

import time

from sparkflash.protocols import listening as L
from sparkflash.protocols import ymodem as Y
from sparkflash.virtual.nor_flash import NorFlash
from sparkflash.virtual.serial_pty import SerialEndpoint, _PtyLink, _Reboot

__all__ = ["POLL_TIMEOUT_S", "STOCK_MAX_SIZE", "StockSerialEndpoint"]

POLL_TIMEOUT_S = 0.5  # NAK_TIMEOUT: 0x100000 polls of Serial.available() on a Core
STOCK_MAX_SIZE = 0x1B000  # FLASH_MAX_SIZE (2014): internal flash end - 0x08005000
MAX_ERRORS = 5
_FILE_NAME_LENGTH, _FILE_SIZE_LENGTH = 256, 16


class _Timeout(Exception):
    pass


class _AckDropper:
    """Line fault `extra["drop_ack"] = N`: the Nth ACK byte the device sends is lost."""

    def __init__(self, link: _PtyLink, n: int) -> None:
        self.link, self.n, self.acks = link, n, 0

    def read(self, n: int, timeout: float) -> bytes:
        return self.link.read(n, timeout)

    def write(self, data: bytes) -> None:
        out = bytearray()
        for b in data:
            if b == Y.ACK:
                self.acks += 1
                if self.acks == self.n:
                    continue
            out.append(b)
        if out:
            self.link.write(bytes(out))


class _Bytes:
    """Byte-at-a-time reads with a per-byte timeout, as Receive_Byte."""

    def __init__(self, link: _PtyLink) -> None:
        self.link, self.buf = link, bytearray()

    def byte(self, timeout: float) -> int:
        end = time.monotonic() + timeout
        while not self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise _Timeout()
            self.buf += self.link.read(4096, left)
        b = self.buf[0]
        del self.buf[0]
        return b


def _strtoul10(field: bytes) -> int:
    """strtoul(s, NULL, 10) on the Core: leading blanks, an optional sign, digits."""
    s = field.decode("latin-1").lstrip(" \t\n\r\f\v")
    neg = s[:1] == "-"
    if s[:1] in "+-" and s:
        s = s[1:]
    digits = ""
    for c in s:
        if not c.isdigit():
            break
        digits += c
    v = int(digits) if digits else 0
    return (-v) & 0xFFFFFFFF if neg else min(v, 0xFFFFFFFF)


def _range_ok_2015(address: int, size: int) -> bool:
    """HAL_FLASH_CheckValidAddressRange (2015), 32-bit arithmetic included."""
    end = (address + size - 1) & 0xFFFFFFFF
    return (address == 0x060000 and end < 0x080000) or (address >= 0x080000 and end < 0x200000)


class StockSerialEndpoint(SerialEndpoint):
    """Listening mode (or a serialSaveFile application) with the stock receiver."""

    def _listen(self, pty: _PtyLink) -> None:
        mode = self.core.options.extra.get("serial_mode", "stock")
        drop = self.core.options.extra.get("drop_ack")
        link: _PtyLink = _AckDropper(pty, int(drop)) if drop and not self.resets else pty  # type: ignore[assignment]
        rx = _Bytes(link)
        if mode == "stock-save":
            address = int(self.core.options.extra.get("stock_save_address", 0x80000))
            rule = str(self.core.options.extra.get("stock_receiver", "2014"))
            while True:
                self._flash_update(link, rx, address, rule)
        while True:  # WiFiCredentialsReader::read
            try:
                c = rx.byte(1.0)
            except _Timeout:
                continue
            if c == ord("i"):
                link.write(f"{L.ID_TEXT}{self.state.info['device_id']}\r\n".encode())
            elif c == ord("f"):
                ota = self.state.board.memory("external").area("ota").start
                if self._flash_update(link, rx, ota, "2014"):
                    link.write((L.FW_RESTART + "\r\n").encode())
                    self.state.info["flags"]["ota_pending"] = True
                    self.state.save()
                    time.sleep(0.1)
                    raise _Reboot()

    def _flash_update(self, link: _PtyLink, rx: _Bytes, address: int, rule: str) -> bool:
        """Serial_Flash_Update: prompt, receive, print the outcome; True on success."""
        link.write((L.FW_PROMPT + "\r\n").encode())
        size, name = self._ymodem_receive(link, rx, address, rule)
        if size > 0:
            link.write(f"\r\n{L.FW_DONE}\r\nName: {name}\r\nSize: {size} bytes\r\n".encode("latin-1"))
            return True
        text = {-1: L.FW_TOO_BIG, -2: "Verification failed!", -3: "Aborted by user."}.get(size, L.FW_FAILED)
        link.write((text + "\r\n").encode())
        return False

    def _packet(self, rx: _Bytes) -> tuple[int, bytes | None]:
        """Receive_Packet: (0, frame) | (0, None) for EOT | (-1, b'') sender abort |
        (1, None) user abort | (-1, None) timeout or bad packet."""
        try:
            c = rx.byte(POLL_TIMEOUT_S)
            if c in (Y.SOH, Y.STX):
                n = 128 if c == Y.SOH else 1024
                frame = bytes([c] + [rx.byte(POLL_TIMEOUT_S) for _ in range(n + 4)])
                if frame[1] != frame[2] ^ 0xFF:
                    return -1, None
                return 0, frame
            if c == Y.EOT:
                return 0, None
            if c == Y.CAN:
                return (0, b"") if rx.byte(POLL_TIMEOUT_S) == Y.CAN else (-1, None)
            if c in (0x41, 0x61):
                return 1, None
            return -1, None
        except _Timeout:
            return -1, None

    def _ymodem_receive(self, link: _PtyLink, rx: _Bytes, address: int, rule: str) -> tuple[int, str]:
        """Ymodem_Receive: (size, name); size -1 too big, -2 verify failed, -3 user abort, 0 failed."""
        flash = self.state.external
        errors, session_begin, size, name = 0, False, 0, ""
        writer = _Update(flash, address)
        while True:
            packets = 0
            while True:
                rc, frame = self._packet(rx)
                if rc == 0:
                    errors = 0
                    if frame == b"":  # CAN CAN from the sender
                        link.write(bytes([Y.ACK]))
                        return 0, name
                    if frame is None:  # EOT
                        link.write(bytes([Y.ACK]))
                        break
                    if frame[1] != packets & 0xFF:
                        link.write(bytes([Y.NAK]))
                        continue
                    payload = frame[3:-2]
                    if packets == 0:
                        if payload[0] == 0:  # empty header: end of the session
                            link.write(bytes([Y.ACK]))
                            return size, name
                        name, field = _parse_header(payload)
                        size = _strtoul10(field)
                        signed = size - (1 << 32) if size >= 1 << 31 else size
                        too_big = (signed > STOCK_MAX_SIZE) if rule == "2014" else not _range_ok_2015(address, size)
                        if too_big:
                            link.write(bytes([Y.CAN, Y.CAN]))
                            return -1, name
                        writer.begin(size)
                        link.write(bytes([Y.ACK, Y.CRC_START]))
                    else:
                        if writer.update(payload):
                            link.write(bytes([Y.ACK]))
                        else:
                            link.write(bytes([Y.CAN, Y.CAN]))
                            return -2, name
                    packets += 1
                    session_begin = True
                elif rc == 1:
                    link.write(bytes([Y.CAN, Y.CAN]))
                    return -3, name
                else:
                    if session_begin:
                        errors += 1
                    if errors > MAX_ERRORS:
                        link.write(bytes([Y.CAN, Y.CAN]))
                        return 0, name
                    link.write(bytes([Y.CRC_START]))


def _parse_header(payload: bytes) -> tuple[str, bytes]:
    """The receiver's name and size-field copy loops (name cut at 256; the size field runs to
    the first space, 16 characters at most)."""
    i = 0
    while i < len(payload) and payload[i] != 0 and i < _FILE_NAME_LENGTH:
        i += 1
    name = payload[:i].decode("latin-1")
    j = i + 1
    field = bytearray()
    while j < len(payload) and payload[j] != 0x20 and len(field) < _FILE_SIZE_LENGTH:
        field.append(payload[j])
        j += 1
    return name, bytes(field.split(b"\0")[0])


class _Update:
    """FLASH_Begin / FLASH_Update of core-common-lib (flasher_additions)."""

    def __init__(self, flash: NorFlash, address: int) -> None:
        self.flash, self.start, self.ptr, self.index = flash, address, address, 0

    def begin(self, size: int) -> None:
        self.ptr, self.index = self.start, 0
        sector = self.flash.sector_size
        for k in range(-(-size // sector)):
            a = (self.start + k * sector) % (self.flash.base + self.flash.size)
            self.flash.erase_sector(self.flash.sector_start(a))

    def update(self, block: bytes) -> bool:
        """Program, read back; True if the chunk index grew (the receiver's test)."""
        f = self.flash
        before = self.index
        end = f.base + f.size
        if self.ptr + len(block) <= end:
            f.program(self.ptr, block)
            good = f.read(self.ptr, len(block)) == block
        else:
            good = False
        if good:
            self.ptr += len(block)
            self.index = (self.index + 1) & 0xFFFF
        else:
            self.ptr = self.ptr // f.sector_size * f.sector_size
            f.erase_sector(f.sector_start(self.ptr))
            self.index = (((self.ptr - self.start) & 0xFFFFFFFF) // len(block)) & 0xFFFF
        return self.index > before
