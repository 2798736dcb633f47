"""Run the host-built real receiver as a Core on a pty, with resets and the bootloader copy.

Like the virtual Core, the device end is a pty master held here and the host opens the
stable symlink `DIR/tty`. When the firmware calls NVIC_SystemReset (exit 42) the port
disappears, the bootloader step runs (FLASH_End's OTA flag set: copy 0x1B000 bytes from
the OTA slot 0x60000 into internal flash at 0x08005000, as the Core's bootloader does) and
a new pty appears behind the same path.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import termios
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

FLASH_SIZE = 2 * 1024 * 1024
INTERNAL_SIZE = 128 * 1024
OTA_SLOT, FIRMWARE_ADDRESS, FIRMWARE_MAX = 0x60000, 0x08005000, 0x1B000
EXIT_RESET = 42
BOOT_S = 0.2
DEVICE_ID = "53ff6c065075535119511687"

# SST25VF016B datasheet (S71271): sector erase 18 ms typical / 25 ms maximum,
# byte and AAI word program 7 us typical / 10 us maximum.
ERASE_TYP_US, ERASE_MAX_US = 18_000, 25_000
PROGRAM_TYP_US, PROGRAM_MAX_US = 7, 10


@dataclass
class RealCore:
    """One host-built Core: `mode` listen | save | save2015 (an app calling serialSaveFile)."""

    exe: Path
    root: Path
    mode: str = "listen"
    address: int = 0x80000
    baud: int = 0
    erase_us: float = 0
    program_us: float = 0
    device_id: str = DEVICE_ID
    drop_ack: int = -1  # line fault: the Nth ACK the device sends is lost (first boot only)
    corrupt_at: int = -1  # line fault: received byte N (from 0) arrives XOR 0xFF (first boot only)
    resets: int = 0
    error: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _fds: tuple[int, int] = field(default=(-1, -1), repr=False)

    @property
    def port(self) -> str:
        return str(self.root / "tty")

    @property
    def flash_path(self) -> Path:
        return self.root / "external.bin"

    @property
    def internal_path(self) -> Path:
        return self.root / "internal.bin"

    def external(self, address: int, length: int) -> bytes:
        with open(self.flash_path, "rb") as f:
            f.seek(address)
            return f.read(length)

    def internal(self, address: int, length: int) -> bytes:
        with open(self.internal_path, "rb") as f:
            f.seek(address - 0x08000000)
            return f.read(length)

    def write_external(self, address: int, data: bytes) -> None:
        with open(self.flash_path, "r+b") as f:
            f.seek(address)
            f.write(data)

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        for p, n in ((self.flash_path, FLASH_SIZE), (self.internal_path, INTERNAL_SIZE)):
            if not p.exists():
                p.write_bytes(b"\xff" * n)
        self._boot()
        self._thread = threading.Thread(target=self._watch, name="real-core", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)
        self._close_pty()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------
    def _boot(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        tty.setraw(master, termios.TCSANOW)
        fcntl.fcntl(master, fcntl.F_SETFL, fcntl.fcntl(master, fcntl.F_GETFL) | os.O_NONBLOCK)
        self._fds = (master, slave)
        env = dict(os.environ, HARNESS_BAUD=str(self.baud), HARNESS_ERASE_US=str(self.erase_us),
                   HARNESS_PROGRAM_US=str(self.program_us), HARNESS_FD=str(master),
                   HARNESS_DROP_ACK=str(self.drop_ack if self.resets == 0 else -1),
                   HARNESS_CORRUPT_AT=str(self.corrupt_at if self.resets == 0 else -1))
        self._proc = subprocess.Popen(
            [str(self.exe), self.mode, str(self.flash_path), self.device_id, hex(self.address)],
            pass_fds=(master,), env=env, stdin=subprocess.DEVNULL)
        tmp = self.root / ".tty.new"
        tmp.unlink(missing_ok=True)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.port)

    def _close_pty(self) -> None:
        Path(self.port).unlink(missing_ok=True)
        for fd in self._fds:
            if fd >= 0:
                os.close(fd)
        self._fds = (-1, -1)

    def _bootloader(self) -> None:
        flags = (self.root / "external.bin.flags")
        text = flags.read_text() if flags.exists() else ""
        if "FLASH_OTA_Update_SysFlag=5\n" in text:
            image = self.external(OTA_SLOT, FIRMWARE_MAX)
            with open(self.internal_path, "r+b") as f:
                f.seek(FIRMWARE_ADDRESS - 0x08000000)
                f.write(image)
            flags.write_text(text.replace("FLASH_OTA_Update_SysFlag=5\n", "FLASH_OTA_Update_SysFlag=0\n"))

    def _watch(self) -> None:
        while not self._stop.is_set():
            assert self._proc is not None
            try:
                rc = self._proc.wait(0.1)
            except subprocess.TimeoutExpired:
                continue
            if self._stop.is_set():
                return
            if rc != EXIT_RESET:
                self.error = f"receiver exited with {rc}"
                self._close_pty()
                return
            self.resets += 1
            self._close_pty()
            self._bootloader()
            time.sleep(BOOT_S)
            self._boot()
