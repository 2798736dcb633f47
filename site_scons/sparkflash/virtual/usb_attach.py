"""Start and stop the umockdev USB bridge (virtual/usb_bridge.py) for a running virtual Core.

The bridge needs GObject introspection (python3-gi, gir1.2-umockdev-1.0), which a venv
does not see, so it runs as a child of the system Python (/usr/bin/python3, or
$SPARKFLASH_GI_PYTHON). `env()` is what a libusb program needs to see the Core as USB
device 1d50:607f: LD_PRELOAD of umockdev's preload library and UMOCKDEV_DIR.

The bridge's hot path, virtual/usb_ioctl_server.c, is built here with the host gcc on first
use, into the per-user cache ($SPARKFLASH_HOME/cache/usb, else ~/.cache/sparkflash/usb) under
a name carrying its source digest, so an edited source is rebuilt and an unchanged one never.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

from sparkflash.errors import ToolchainError

__all__ = ["CLIENT_TIMER_SLACK_NS", "UsbBridge", "bridge_available", "fine_timer_slack", "gi_python", "ioctl_server"]

BRIDGE = Path(__file__).with_name("usb_bridge.py")
SERVER_SOURCE = Path(__file__).with_name("usb_ioctl_server.c")
APT_HINT = "apt-get install umockdev gir1.2-umockdev-1.0 python3-gi"


#: umockdev's preload library sleeps usleep(0) after every ioctl it forwards (to force a context switch);
#: with Linux's default 50 us timer slack that sleep lasts 60-90 us, three times per control transfer.
#: A client started with this slack (prctl PR_SET_TIMERSLACK; a shell: echo 1000 > /proc/$$/timerslack_ns)
#: wakes within ~1 us instead.
CLIENT_TIMER_SLACK_NS = 1000
_PR_SET_TIMERSLACK = 29


def fine_timer_slack() -> None:
    """A `preexec_fn` for a libusb client of the bridge: the fine timer slack above (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, CLIENT_TIMER_SLACK_NS, 0, 0, 0)


def _cache_dir() -> Path:
    if os.environ.get("SPARKFLASH_HOME"):
        return Path(os.environ["SPARKFLASH_HOME"]) / "cache" / "usb"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sparkflash" / "usb"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def ioctl_server() -> Path:
    """The built usb_ioctl_server (compiled now if this source's build is not in the cache)."""
    source = SERVER_SOURCE.read_bytes()
    target = _cache_dir() / f"usb_ioctl_server-{hashlib.sha256(source).hexdigest()[:16]}"
    if target.exists():
        return target
    cc = _compiler()
    if not cc:
        raise ToolchainError("virtual-core --usb: no C compiler to build usb_ioctl_server (apt-get install gcc)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    p = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(SERVER_SOURCE)], capture_output=True, text=True,
                       check=False)
    if p.returncode:
        tmp.unlink(missing_ok=True)
        raise ToolchainError(f"virtual-core --usb: {cc} could not build {SERVER_SOURCE.name}: {p.stderr.strip()[-400:]}")
    os.replace(tmp, target)  # atomic: a concurrent start sees the old state or the whole binary
    return target


def gi_python() -> str:
    return os.environ.get("SPARKFLASH_GI_PYTHON", "/usr/bin/python3")


def bridge_available() -> str | None:
    """None if the bridge can run here, else why not."""
    py = gi_python()
    if not Path(py).exists():
        return f"{py} not found (set SPARKFLASH_GI_PYTHON to a Python with python3-gi)"
    probe = "import gi; gi.require_version('UMockdev', '1.0'); from gi.repository import UMockdev"
    p = subprocess.run([py, "-c", probe], capture_output=True, text=True, check=False,
                       env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_PRELOAD")})
    if p.returncode:
        return f"{py} cannot load umockdev's GObject bindings ({APT_HINT})"
    if not _compiler():
        return "no C compiler to build the bridge's ioctl server (apt-get install gcc)"
    return None


class UsbBridge:
    def __init__(self, state_dir: Path, *, unconfigured: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.state_dir = state_dir
        self.unconfigured = unconfigured
        self.extra = extra  # more bridge arguments (test faults: --fail-urbs N,M, --busy)
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self._err: IO[bytes] | None = None

    def start(self) -> UsbBridge:
        why = bridge_available()
        if why:
            raise ToolchainError(f"virtual-core --usb: {why}")
        cmd = [gi_python(), str(BRIDGE), "--socket", str(self.state_dir / "dfu.sock"), "--server", str(ioctl_server())]
        if self.unconfigured:
            cmd.append("--unconfigured")
        cmd += self.extra
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_PRELOAD", "UMOCKDEV_DIR")}
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the bridge
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self._err.seek(0)
            err = self._err.read().decode(errors="replace")
            self.stop()
            raise ToolchainError(f"virtual-core --usb: the umockdev bridge did not start: {err.strip()[-400:]}")
        self.info = json.loads(line)
        return self

    def env(self) -> dict[str, str]:
        """Environment additions for a client process (merge into os.environ)."""
        return dict(self.info["env"])

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if self._err is not None:
            self._err.close()
        self.proc, self._err = None, None

    def __enter__(self) -> UsbBridge:  # noqa: PYI034 - start() may raise; returns the started bridge
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
