"""The virtual Core as a USB device 1d50:607f for libusb programs (dfu-util, pyusb), through umockdev.

Runs under the system Python that has GObject introspection (Debian: python3-gi,
gir1.2-umockdev-1.0, umockdev), as its own process: `sparkflash virtual-core --usb`
starts it with /usr/bin/python3, so the project's venv need not see `gi`. It therefore
imports only the standard library and gi, nothing else of sparkflash.

umockdev's testbed describes a USB device in a private sysfs (descriptors taken from the
virtual Core itself), and its preload library (LD_PRELOAD=libumockdev-preload.so.0, with
UMOCKDEV_DIR naming the testbed) hands the usbdevfs ioctls a libusb program makes on
/dev/bus/usb/001/002 to whatever listens on the testbed's ioctl/dev/bus/usb/001/002 socket:
here virtual/usb_ioctl_server.c (built with gcc by usb_attach.py), which forwards control
URBs, one at a time, to the Core's DfuSe socket (STATE/dfu.sock, framing in
transports/dfu_socket.py) and answers them when reaped. It replaces umockdev's own ioctl
handler (UMockdev.IoctlBase), whose GLib async I/O and a Python signal handler per ioctl
cost ~0.8 ms per control transfer idle and 2-4 ms on a loaded machine. Limits: Linux only;
the client must be dynamically linked against libc (the preload library intercepts
open/ioctl).

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
import subprocess
import sys

import gi  # type: ignore[import-not-found]

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # type: ignore[import-not-found]  # noqa: E402

PRELOAD = "libumockdev-preload.so.0"
BUS, DEVNUM = 1, 2
DEVNODE = f"/dev/bus/usb/{BUS:03d}/{DEVNUM:03d}"
SYSFS = f"/devices/pci0000:00/0000:00:14.0/usb{BUS}/{BUS}-1"

REQUEST, REPLY = struct.Struct("<BBHHH"), struct.Struct("<BH")


class CoreLink:
    """The Core's DfuSe socket, for the descriptors the sysfs description needs; closed before the
    ioctl server starts (the Core serves one connection at a time)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None

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
            self.close()
            return -errno.EPROTO, b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


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
    ap.add_argument("--server", required=True, help="the built usb_ioctl_server (virtual/usb_attach.py builds it)")
    ap.add_argument("--unconfigured", action="store_true", help="start with no configuration set (bConfigurationValue empty)")
    ap.add_argument("--fail-urbs", default="", help="test fault: comma list of control URB numbers (from 1) failing with EPROTO")
    ap.add_argument("--busy", action="store_true", help="test fault: claiming the interface fails with EBUSY")
    ap.add_argument("--socket-memory", action="store_true",
                    help="test: the client's memory only through the preload library (as where ptrace is refused)")
    a = ap.parse_args(argv)
    if a.fail_urbs and not all(n.isdigit() for n in a.fail_urbs.split(",")):
        raise SystemExit(f"usb-bridge: --fail-urbs wants numbers separated by commas, not {a.fail_urbs!r}")
    core = CoreLink(a.socket)
    testbed = UMockdev.Testbed.new()
    testbed.add_from_string(sysfs_description(core, not a.unconfigured))
    core.close()  # the Core serves one connection at a time: the ioctl server's from now on
    root = testbed.get_root_dir()
    listen = os.path.join(root, "ioctl", DEVNODE.lstrip("/"))  # where the preload library looks for DEVNODE's handler
    os.makedirs(os.path.dirname(listen), exist_ok=True)
    cmd = [a.server, listen, a.socket, os.path.join(root, "sys" + SYSFS, "bConfigurationValue")]
    cmd += ["--busy"] * a.busy + ["--socket-memory"] * a.socket_memory + (["--fail-urbs", a.fail_urbs] if a.fail_urbs else [])
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    if server.stdout.readline().strip() != "ready":
        raise SystemExit(f"usb-bridge: the ioctl server did not start (exit {server.wait()})")
    print(json.dumps({"umockdev_dir": root, "devnode": DEVNODE, "path": f"{BUS}-1",
                      "env": {"LD_PRELOAD": PRELOAD, "UMOCKDEV_DIR": root}}), flush=True)

    def stop(_sig: int, _frame: object) -> None:
        server.terminate()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    server.wait()
    del testbed  # removes its directory
    return 0


if __name__ == "__main__":
    os.environ.pop("LD_PRELOAD", None)
    raise SystemExit(main(sys.argv[1:]))
