"""What a DFU transport offers the deploy loop: EP0 control transfers, nothing else.

Implemented by pyusb (real Cores) and by the virtual core's socket; both raise
`EndpointStalled` for a STALL, `DeviceGone` when the device vanished, and
`TransportTimeout` when it did not answer in time.
"""

from __future__ import annotations

from typing import Protocol

from sparkflash.protocols.dfuse import ControlRequest

__all__ = ["ControlPipe"]


class ControlPipe(Protocol):
    name: str  # how the user named it: "usb:1-2", "virtual:/path"

    def control(self, req: ControlRequest, timeout: float) -> bytes:
        """Send one control request; IN data (or b"" for OUT)."""
        ...

    def close(self) -> None: ...
