"""Test harness of the host-built device agent: build it, run it, look into its flash."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sparkflash import device_agent
from sparkflash.protocols import listening as L
from sparkflash.transports.serial_port import open_serial

WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror"]


def build_host_agent(out: Path, cc: str = "gcc", extra: list[str] | None = None) -> Path:
    """gcc the portable agent + the host binding into out/sfa-agent-host."""
    exe = out / "sfa-agent-host"
    srcs = [str(p) for p in device_agent.portable_sources() + device_agent.host_sources()]
    subprocess.run([cc, *WARN, "-O2", "-g", f"-I{device_agent.include_dir()}", *(extra or []), *srcs, "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return exe


class HostAgent:
    """One host-built agent process: its port (a stable symlink) and its two flash files."""

    def __init__(self, exe: Path, where: Path, env: dict[str, str] | None = None,
                 device_id: str = "53ff6c065075535119511687") -> None:
        where.mkdir(parents=True, exist_ok=True)
        self.dir, self.device_id = where, device_id
        self.ext, self.internal = where / "external.bin", where / "internal.bin"
        self.port = str(where / "tty")
        self.stderr: str | None = None
        self.proc = subprocess.Popen(
            [str(exe), "--flash", str(self.ext), "--internal", str(self.internal), "--link", self.port,
             "--port-file", str(where / "serial.port"), "--id", device_id],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert line.startswith("PTY /dev/"), (line, self.proc.stderr.read() if self.proc.stderr else b"")
        end = time.monotonic() + 5
        while not os.path.islink(self.port):
            assert time.monotonic() < end, "the agent made no port link"
            time.sleep(0.01)

    def read_external(self, address: int, n: int) -> bytes:
        with self.ext.open("rb") as f:
            f.seek(address)
            return f.read(n)

    def read_internal(self, address: int, n: int) -> bytes:
        with self.internal.open("rb") as f:
            f.seek(address - 0x08000000)
            return f.read(n)

    def write_external(self, address: int, data: bytes) -> None:
        """Preload (the agent reads the file on every access)."""
        with self.ext.open("r+b") as f:
            f.seek(address)
            f.write(data)

    def stop(self) -> str:
        """Stop it (once); its stderr. A crash or a non-zero exit fails the test."""
        if self.stderr is None:
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                _, err = self.proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, err = self.proc.communicate()
            self.stderr = err.decode()
        assert self.proc.returncode == 0, f"the host agent failed ({self.proc.returncode}): {self.stderr}"
        return self.stderr


@dataclass
class Device:
    """What a conformance test needs of either device: its port, its flash, its id."""

    kind: str
    port: str
    device_id: str
    read_external: Callable[[int, int], bytes]
    write_external: Callable[[int, bytes], None]



def ask(port: str, line: bytes, timeout: float = 5.0) -> str:
    """One command on a fresh connection; its first OK/ERR reply line."""
    link = open_serial(port)
    try:
        link.drain_input()
        link.write(line)
        buf = L.LineBuffer()
        for _ in range(int(timeout / 0.05)):
            buf.receive_data(link.read(4096, 0.05))
            while (got := buf.next_line()) is not None:
                if got.startswith(("OK", "ERR")):
                    return got
        raise AssertionError(f"no reply to {line!r}")
    finally:
        link.close()
