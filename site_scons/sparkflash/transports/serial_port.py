"""pyserial adapter for `Link`: open by path or URL, translate pyserial errors.

A Core's USB serial port disappears when the device resets or is unplugged; pyserial then
reports EIO or "returned no data", which we turn into DeviceGone naming the port, so the
deploy loop can reconnect or stop with a clear message.
"""

from __future__ import annotations

import errno
import time
import warnings
from typing import Any

import serial.rfc2217

import serial
from sparkflash.errors import DeviceGone, TransportError, TransportTimeout

__all__ = ["POLL_S", "SerialLink", "open_serial"]

POLL_S = 0.05  # read-timeout slice: the granularity of every deadline on a serial port

try:  # pyserial lets tcdrain/tcflush failures through as termios.error, not OSError
    import termios

    _GONE: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
except ImportError:  # not POSIX
    _GONE = (serial.SerialException, OSError)

_HINTS = {
    errno.ENOENT: "no such port; is the device plugged in (and the virtual core running)?",
    errno.EACCES: "permission denied; add your user to the dialout group",
    errno.EBUSY: "port busy; close other programs using it",
}


class SerialLink:
    """A `Link` over one open pyserial port."""

    def __init__(self, port: serial.Serial, name: str) -> None:
        self.port, self.name = port, name

    def read(self, n: int, timeout: float) -> bytes:
        # The port keeps a short fixed timeout (changing it costs a tcsetattr per call);
        # polling in slices of it gives the caller's deadline with that granularity.
        end = time.monotonic() + timeout
        try:
            while True:
                first = self.port.read(1)
                if first:
                    return first + self.port.read(max(0, min(n - 1, self.port.in_waiting)))
                if time.monotonic() >= end:
                    return b""
        except _GONE as e:
            raise DeviceGone(f"serial port {self.name} vanished while reading ({e})") from e

    def write(self, data: bytes) -> None:
        try:
            sent = self.port.write(data)
            self.port.flush()
        except serial.SerialTimeoutException as e:
            raise TransportTimeout(f"serial port {self.name}: write of {len(data)} bytes timed out") from e
        except _GONE as e:
            raise DeviceGone(f"serial port {self.name} vanished while writing ({e})") from e
        if sent is not None and sent != len(data):
            raise TransportTimeout(f"serial port {self.name}: wrote {sent} of {len(data)} bytes")

    def drain_input(self) -> None:
        """Drop stale bytes (prompts a device printed while nobody was listening)."""
        try:
            self.port.reset_input_buffer()
        except _GONE as e:
            raise DeviceGone(f"serial port {self.name} vanished ({e})") from e

    def close(self) -> None:
        _close(self.port)


def _close(port: serial.SerialBase) -> None:
    """Close a port; for network URLs also the socket, which pyserial 3.5's RFC 2217 client
    leaks when the peer has already gone (its shutdown() raises before close())."""
    sock = getattr(port, "_socket", None)
    try:
        port.close()
    except _GONE:
        pass  # it is gone already
    if sock is not None:
        sock.close()


class _Rfc2217(serial.rfc2217.Serial):
    """pyserial 3.5's RFC 2217 client, closing its socket even when shutdown() fails (a peer
    gone mid-negotiation): its own close() then drops the socket unclosed."""

    def close(self) -> None:
        sock: Any = getattr(self, "_socket", None)
        try:
            super().close()
        finally:
            if sock is not None:
                sock.close()


def open_serial(port: str, baud: int = 115200, *, write_timeout: float = 30.0) -> SerialLink:
    """Open a port path or pyserial URL (`socket://`, `rfc2217://`, `spy://`), raw 8N1, no
    flow control. pyserial's RFC 2217 client refuses a write timeout (its writes go to a
    TCP socket and block at most as long as the network does), so none is set there; an
    exclusive lock only exists for local ports."""
    url = port.split("://", 1)[0].lower() if "://" in port else ""
    kw: dict[str, Any] = {} if url == "rfc2217" else {"write_timeout": write_timeout}
    if not url:
        kw["exclusive"] = True
    try:
        p: Any  # a serial.Serial, or the RFC 2217 client (same methods, another base in the stubs)
        if url == "rfc2217":
            p = _Rfc2217(None, baudrate=baud, timeout=POLL_S)
            p.port = port
        else:
            p = serial.serial_for_url(port, baudrate=baud, timeout=POLL_S, do_not_open=True, **kw)
        with warnings.catch_warnings():  # pyserial 3.5's rfc2217 client calls Thread.setDaemon
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                p.open()
            except BaseException:
                _close(p)
                raise
    except serial.SerialException as e:
        code = getattr(e, "errno", None)
        hint = _HINTS.get(code, "") if isinstance(code, int) else ""
        msg = f"cannot open serial port {port}: {hint or e}"
        raise (DeviceGone(msg) if code == errno.ENOENT else TransportError(msg)) from e
    except (ValueError, OSError) as e:
        raise TransportError(f"cannot open serial port {port}: {e}") from e
    return SerialLink(p, port)
