"""What a byte-stream transport offers a protocol loop: read with a timeout, write, close.

Serial ports (pyserial) and the virtual Core's pty both implement `Link`, so the same loop
(`transports.drive`) runs YMODEM on the host and on the virtual device. A quiet line is
normal for YMODEM (the protocol decides what a timeout means), so `read` returns b"" on
timeout; only a vanished device raises.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Link"]


class Link(Protocol):
    name: str  # how the user named it (port path or URL), for error messages

    def read(self, n: int, timeout: float) -> bytes:
        """Up to n bytes, at least one unless `timeout` seconds pass (then b"").

        Raises DeviceGone when the device or port disappeared."""
        ...

    def write(self, data: bytes) -> None:
        """All of `data`; DeviceGone if the port vanished, TransportTimeout if it never drains."""
        ...

    def close(self) -> None: ...
