"""The installed `dfu-util`, run with the exact arguments a Spark Core user would type.

It is the fallback backend (--backend dfu-util) for hosts where pyusb cannot reach
the device. dfu-util's sysexits exit codes and its stderr become our errors.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sparkflash.errors import (
    DeviceError,
    InputError,
    ProtocolError,
    ToolchainError,
    TransportError,
)
from sparkflash.transports.usb_device import BUSY_HINT, DFU_MODE_HINT, UDEV_HINT

__all__ = ["DfuUtil", "download_args", "list_args", "upload_args"]

NO_DEVICE = "No DFU capable USB device available"


def _dev(vid: int, pid: int) -> list[str]:
    return ["-d", f"{vid:04x}:{pid:04x}"]


def _path(path: str | None) -> list[str]:
    return ["-p", path] if path else []


def download_args(vid: int, pid: int, alt: int, address: int, file: Path, *, leave: bool = False,
                  path: str | None = None, force: bool = False) -> list[str]:
    """e.g. `-d 1d50:607f -a 1 -s 0x00080000 -D file` (raw download, dfu-util erases the pages).

    `force`: dfu-util refuses to write a segment its layout marks read-only (the Core's
    bootloader, type 'a') unless the address carries `:force` (--allow-protected)."""
    mod = (":leave" if leave else "") + (":force" if force else "")
    return [*_dev(vid, pid), *_path(path), "-a", str(alt), "-s", f"0x{address:08x}{mod}", "-D", str(file)]


def upload_args(vid: int, pid: int, alt: int, address: int, length: int, file: Path, *,
                leave: bool = False, path: str | None = None) -> list[str]:
    """e.g. `-d 1d50:607f -a 1 -s 0x00002000:1024 -U file` (dfu-util refuses to overwrite `file`)."""
    mod = ":leave" if leave else ""
    return [*_dev(vid, pid), *_path(path), "-a", str(alt), "-s", f"0x{address:08x}:{length}{mod}", "-U", str(file)]


def list_args(vid: int, pid: int) -> list[str]:
    return [*_dev(vid, pid), "-l"]


@dataclass
class DfuUtil:
    exe: str = "dfu-util"
    timeout: float = 300.0

    def path(self) -> str:
        found = shutil.which(self.exe)
        if found is None:
            raise ToolchainError(f"{self.exe} not found on PATH: apt-get install dfu-util, or use --backend pyusb")
        return found

    def run(self, args: list[str]) -> str:
        """Run dfu-util; stdout on success, our error class (with its stderr) otherwise."""
        cmd = [self.path(), *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            raise TransportError(f"`{' '.join(cmd)}` did not finish in {self.timeout:.0f} s") from e
        if p.returncode == 0:
            return p.stdout
        lines = [ln for ln in (p.stderr or p.stdout).splitlines() if ln.strip()]
        tail = lines[-1] if lines else "no output"
        msg = f"`{' '.join(cmd)}` failed (exit {p.returncode}): {tail}"
        if NO_DEVICE in p.stderr:
            raise TransportError(f"{msg}; {DFU_MODE_HINT}")
        if "LIBUSB_ERROR_BUSY" in p.stderr or "Cannot claim interface" in p.stderr:
            raise TransportError(f"{msg}; {BUSY_HINT}")
        if "LIBUSB_ERROR_ACCESS" in p.stderr or "Cannot open DFU device" in p.stderr:
            raise TransportError(f"{msg}; {UDEV_HINT}")
        if p.returncode in (64, 65, 66):
            raise InputError(msg)
        if p.returncode == 76:
            raise ProtocolError(msg)
        raise DeviceError(msg)

    def download(self, vid: int, pid: int, alt: int, address: int, file: Path, *, leave: bool = False,
                 path: str | None = None, force: bool = False) -> str:
        return self.run(download_args(vid, pid, alt, address, file, leave=leave, path=path, force=force))

    def upload(self, vid: int, pid: int, alt: int, address: int, length: int, out: Path, *,
               path: str | None = None) -> bytes:
        out.unlink(missing_ok=True)
        self.run(upload_args(vid, pid, alt, address, length, out, path=path))
        data = out.read_bytes()
        if len(data) != length:
            raise TransportError(f"dfu-util uploaded {len(data)} of {length} bytes at 0x{address:08x}")
        return data
