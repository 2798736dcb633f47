"""A pty between a host and a device that corrupts the link on purpose: flip one byte the
host sends, or swallow one ACK the device sends. Our own stand-in for a noisy USB cable."""

from __future__ import annotations

import os
import select
import termios
import threading
import tty

from sparkflash.transports.serial_port import open_serial

ACK = 0x06


class FaultProxy:
    """proxy.port is what the host opens; bytes go to and from `device_port`."""

    def __init__(self, device_port: str, link: str, *, flip_at: int | None = None, drop_ack: int | None = None) -> None:
        self.flip_at, self.drop_ack = flip_at, drop_ack
        self.flipped = self.dropped = 0
        self._to_device = self._acks = 0
        self.device = open_serial(device_port)
        self.master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        self._slave = slave  # kept open: the host may close and reopen its end
        os.symlink(os.ttyname(slave), link)
        self.port = link
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()

    def _host_to_device(self, data: bytes) -> bytes:
        out = bytearray(data)
        if self.flip_at is not None and self._to_device <= self.flip_at < self._to_device + len(out):
            out[self.flip_at - self._to_device] ^= 0x40
            self.flipped += 1
        self._to_device += len(out)
        return bytes(out)

    def _device_to_host(self, data: bytes) -> bytes:
        if self.drop_ack is None:
            return data
        out = bytearray()
        for b in data:
            if b == ACK:
                self._acks += 1
                if self._acks == self.drop_ack:
                    self.dropped += 1
                    continue
            out.append(b)
        return bytes(out)

    def _run(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.02)
            if r:
                data = os.read(self.master, 4096)
                if data:
                    self.device.write(self._host_to_device(data))
            got = self.device.read(4096, 0.0)
            if got:
                os.write(self.master, self._device_to_host(got))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.device.close()
        os.close(self.master)
        os.close(self._slave)
        os.unlink(self.port)
