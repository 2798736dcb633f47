"""The virtual Core as a USB device 1d50:607f for libusb programs (dfu-util, pyusb), through umockdev.

Runs under the system Python that has GObject introspection (Debian: python3-gi,
gir1.2-umockdev-1.0, umockdev), as its own process: `sparkflash virtual-core --usb`
starts it with /usr/bin/python3, so the project's venv need not see `gi`. It therefore
imports only the standard library and gi, nothing else of sparkflash.

umockdev's testbed describes a USB device in a private sysfs (descriptors taken from the
virtual Core itself), and its preload library (LD_PRELOAD=libumockdev-preload.so.0, with
UMOCKDEV_DIR naming the testbed) hands the usbdevfs ioctls a libusb program makes on
/dev/bus/usb/001/002 to this process: control URBs are forwarded, one at a time, to the
Core's DfuSe socket (STATE/dfu.sock, framing in transports/dfu_socket.py), answered when
reaped. Limits: Linux only; the client must be dynamically linked against libc (the
preload library intercepts open/ioctl); one client at a time.

Output: one JSON line {"umockdev_dir", "devnode", "env": {...}} on stdout once ready.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import struct
import sys
import threading
from collections import deque
from typing import Any

import gi  # type: ignore[import-not-found]

gi.require_version("UMockdev", "1.0")
from gi.repository import GLib, UMockdev  # type: ignore[import-not-found]  # noqa: E402

PRELOAD = "libumockdev-preload.so.0"
BUS, DEVNUM = 1, 2
DEVNODE = f"/dev/bus/usb/{BUS:03d}/{DEVNUM:03d}"
SYSFS = f"/devices/pci0000:00/0000:00:14.0/usb{BUS}/{BUS}-1"

REQUEST, REPLY = struct.Struct("<BBHHH"), struct.Struct("<BH")
URB = struct.Struct("<BBxxiIxxxxQiiiiiIQ")  # struct usbdevfs_urb (x86_64/aarch64), 56 bytes
URB_TYPE_CONTROL = 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | ord("U") << 8 | nr


_IO, _IOW, _IOR, _IOWR = 0, 1, 2, 3
SETINTERFACE = _ioc(_IOR, 4, 8)
SETCONFIGURATION = _ioc(_IOR, 5, 4)
GETDRIVER = _ioc(_IOW, 8, 260)
SUBMITURB = _ioc(_IOR, 10, URB.size)
DISCARDURB = _ioc(_IO, 11, 0)
REAPURB = _ioc(_IOW, 12, 8)
REAPURBNDELAY = _ioc(_IOW, 13, 8)
CLAIMINTERFACE = _ioc(_IOR, 15, 4)
RELEASEINTERFACE = _ioc(_IOR, 16, 4)
CONNECTINFO = _ioc(_IOW, 17, 8)
IOCTL = _ioc(_IOWR, 18, 16)
RESET = _ioc(_IO, 20, 0)
CLEAR_HALT = _ioc(_IOR, 21, 4)
GET_CAPABILITIES = _ioc(_IOR, 26, 4)
DISCONNECT_CLAIM = _ioc(_IOR, 27, 264)
GET_SPEED = _ioc(_IO, 31, 0)
USB_SPEED_FULL = 2


class CoreLink:
    """The Core's DfuSe socket; reconnected after the Core reset (DFU leave)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()

    def _connect(self) -> socket.socket:
        if self.sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.path)
            self.sock = s
        return self.sock

    def _recv(self, s: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionResetError("the Core closed the link")
            buf += chunk
        return buf

    def control(self, setup: bytes, out: bytes, timeout: float) -> tuple[int, bytes]:
        """(0 or -errno, IN data)."""
        rt, _rq, _value, _index, length = REQUEST.unpack(setup)
        with self.lock:
            for attempt in range(2):
                try:
                    s = self._connect()
                    s.settimeout(timeout)
                    s.sendall(setup + (b"" if rt & 0x80 else out[:length]))
                    result, n = REPLY.unpack(self._recv(s, REPLY.size))
                    data = self._recv(s, n) if n else b""
                    return (-errno.EPIPE, b"") if result else (0, data)
                except TimeoutError:
                    self.close()
                    return -errno.ETIMEDOUT, b""
                except OSError:
                    self.close()  # the Core reset (leave) or restarted: one fresh connection, then give up
                    if attempt:
                        return -errno.EPROTO, b""
        return -errno.EPROTO, b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Bridge:
    def __init__(self, core: CoreLink, testbed: Any, configured: bool, *, fail_urbs: frozenset[int] = frozenset(),
                 busy: bool = False) -> None:
        self.core, self.testbed = core, testbed
        self.configured = configured
        self.fail_urbs, self.busy = fail_urbs, busy  # faults for tests: bus errors on these URBs, interface taken
        self.done: deque[Any] = deque()  # completed URBs (IoctlData), reaped in order
        self.handler = UMockdev.IoctlBase()
        self.handler.connect("handle-ioctl", self.on_ioctl)
        self.control_transfers = 0

    def _standard(self, rt: int, rq: int, value: int, index: int) -> int:
        status, _ = self.core.control(REQUEST.pack(rt, rq, value, index, 0), b"", 5.0)
        return status

    def on_ioctl(self, _handler: Any, client: Any) -> bool:
        try:
            return self._ioctl(client)
        except Exception as e:  # noqa: BLE001 - a bridge bug must not kill the client: it sees EIO
            print(f"usb-bridge: ioctl 0x{client.get_request() & 0xFFFFFFFF:08x} failed: {e!r}", file=sys.stderr)
            client.complete(-1, errno.EIO)
            return True

    def _ioctl(self, client: Any) -> bool:
        req = client.get_request() & 0xFFFFFFFF
        arg = client.get_arg()
        if req == SUBMITURB:
            return self._submit(client, arg)
        if req in (REAPURB, REAPURBNDELAY):
            if not self.done:
                client.complete(-1, errno.EAGAIN)
                return True
            urb = self.done.popleft()
            arg.resolve(0, 8).set_ptr(0, urb)
            client.complete(0, 0)
            return True
        if req == DISCARDURB:
            client.complete(-1, errno.EINVAL)  # every URB completes at once: nothing left to cancel
            return True
        if req == SETINTERFACE:
            iface, alt = struct.unpack("<II", bytes(arg.resolve(0, 8).retrieve()))
            st = self._standard(0x01, 0x0B, alt, iface)
            client.complete(*((0, 0) if st == 0 else (-1, -st)))
            return True
        if req == SETCONFIGURATION:
            (value,) = struct.unpack("<I", bytes(arg.resolve(0, 4).retrieve()))
            self.configured = value == 1
            self.testbed.set_attribute("/sys" + SYSFS, "bConfigurationValue", "1" if self.configured else "")
            client.complete(0, 0)
            return True
        if req in (GETDRIVER, IOCTL):
            client.complete(-1, errno.ENODATA)  # no kernel driver bound: nothing to detach
            return True
        if req == CONNECTINFO:
            arg.resolve(0, 8).update(0, list(struct.pack("<IB3x", DEVNUM, 0)))
            client.complete(0, 0)
            return True
        if req == GET_CAPABILITIES:
            arg.resolve(0, 4).update(0, list(struct.pack("<I", 0)))
            client.complete(0, 0)
            return True
        if req == GET_SPEED:
            client.complete(USB_SPEED_FULL, 0)
            return True
        if req in (CLAIMINTERFACE, DISCONNECT_CLAIM) and self.busy:
            client.complete(-1, errno.EBUSY)
            return True
        if req in (CLAIMINTERFACE, RELEASEINTERFACE, RESET, CLEAR_HALT, DISCONNECT_CLAIM):
            client.complete(0, 0)
            return True
        client.complete(-1, errno.ENOTTY)
        return True

    def _submit(self, client: Any, arg: Any) -> bool:
        urb = arg.resolve(0, URB.size)
        f = list(URB.unpack(bytes(urb.retrieve())))
        kind, length = f[0], f[5]
        if kind != URB_TYPE_CONTROL or length < 8:
            client.complete(-1, errno.EINVAL)  # the Core has only EP0
            return True
        buf = urb.resolve(16, length)
        raw = bytes(buf.retrieve())
        setup, body = raw[:8], raw[8:]
        rt = setup[0]
        self.control_transfers += 1
        if self.control_transfers in self.fail_urbs:
            status, data = -errno.EPROTO, b""  # a CRC/bit-stuffing error on the bus: never reached the Core
        else:
            status, data = self.core.control(setup, body, 5.0)
        if status == 0 and rt & 0x80 and data:
            data = data[: length - 8]
            buf.update(8, list(data))
        f[2] = status  # status
        f[6] = len(data) if rt & 0x80 else (len(body) if status == 0 else 0)  # actual_length (setup excluded)
        urb.update(0, list(URB.pack(*f)))
        self.done.append(urb)
        client.complete(0, 0)
        return True


def _descriptor(core: CoreLink, kind: int, index: int, length: int, lang: int = 0) -> bytes:
    status, data = core.control(REQUEST.pack(0x80, 6, kind << 8 | index, lang, length), b"", 5.0)
    if status:
        raise SystemExit(f"usb-bridge: the virtual Core does not answer GET_DESCRIPTOR({kind}, {index})")
    return data


def _string(core: CoreLink, index: int) -> str:
    if not index:
        return ""
    d = _descriptor(core, 3, index, 255, 0x0409)
    return d[2 : d[0]].decode("utf-16-le", "replace").split("\0", 1)[0]


def sysfs_description(core: CoreLink, configured: bool) -> str:
    dev = _descriptor(core, 1, 0, 18)
    head = _descriptor(core, 2, 0, 9)
    cfg = _descriptor(core, 2, 0, int.from_bytes(head[2:4], "little"))
    vid, pid, bcd = struct.unpack_from("<HHH", dev, 8)
    serial = _string(core, dev[16])

    def attr(name: str, value: str) -> str:
        return f"A: {name}={value}\\n\n"

    return (f"P: {SYSFS}\nN: bus/usb/{BUS:03d}/{DEVNUM:03d}\n"
            f"E: SUBSYSTEM=usb\nE: DEVTYPE=usb_device\nE: DRIVER=usb\nE: BUSNUM={BUS:03d}\nE: DEVNUM={DEVNUM:03d}\n"
            f"E: DEVNAME={DEVNODE}\nE: PRODUCT={vid:x}/{pid:x}/{bcd:x}\n"
            + attr("idVendor", f"{vid:04x}") + attr("idProduct", f"{pid:04x}") + attr("bcdDevice", f"{bcd:04x}")
            + attr("busnum", str(BUS)) + attr("devnum", str(DEVNUM)) + attr("devpath", "1")
            + attr("bNumConfigurations", "1") + attr("bConfigurationValue", "1" if configured else "")
            + attr("speed", "12") + attr("serial", serial) + attr("manufacturer", _string(core, dev[14]))
            + attr("product", _string(core, dev[15]))
            + f"H: descriptors={(dev + cfg).hex()}\n")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="usb_bridge")
    ap.add_argument("--socket", required=True, help="the virtual Core's STATE/dfu.sock")
    ap.add_argument("--unconfigured", action="store_true", help="start with no configuration set (bConfigurationValue empty)")
    ap.add_argument("--fail-urbs", default="", help="test fault: comma list of control URB numbers (from 1) failing with EPROTO")
    ap.add_argument("--busy", action="store_true", help="test fault: claiming the interface fails with EBUSY")
    a = ap.parse_args(argv)
    core = CoreLink(a.socket)
    testbed = UMockdev.Testbed.new()
    fail = frozenset(int(n) for n in a.fail_urbs.split(",") if n)
    bridge = Bridge(core, testbed, not a.unconfigured, fail_urbs=fail, busy=a.busy)
    if not testbed.attach_ioctl(DEVNODE, bridge.handler):
        raise SystemExit(f"usb-bridge: umockdev could not attach an ioctl handler to {DEVNODE}")
    testbed.add_from_string(sysfs_description(core, not a.unconfigured))
    root = testbed.get_root_dir()
    print(json.dumps({"umockdev_dir": root, "devnode": DEVNODE, "path": f"{BUS}-1",
                      "env": {"LD_PRELOAD": PRELOAD, "UMOCKDEV_DIR": root}}), flush=True)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    core.close()
    return 0


if __name__ == "__main__":
    os.environ.pop("LD_PRELOAD", None)
    raise SystemExit(main(sys.argv[1:]))
