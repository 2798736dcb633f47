"""The virtual core's DfuSe endpoint as a control pipe: EP0 transfers framed over a unix socket.

Frame, host -> device: `<BBHHH` bmRequestType, bRequest, wValue, wIndex, wLength, then
wLength data bytes for OUT requests. Device -> host: `<BH` result (0 = ACK, 1 = STALL),
length, then that many IN data bytes. One request in flight at a time, as on EP0.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

from sparkflash.errors import DeviceGone, TransportError, TransportTimeout
from sparkflash.protocols.dfuse import ControlRequest, EndpointStalled

__all__ = ["REQUEST", "REPLY", "ACK", "STALLED", "SOCKET_NAME", "unix_path", "recv_exact", "SocketPipe"]

REQUEST = struct.Struct("<BBHHH")
REPLY = struct.Struct("<BH")
ACK, STALLED = 0, 1
SOCKET_NAME = "dfu.sock"
_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; stay clear of it


@contextlib.contextmanager
def unix_path(path: Path) -> Iterator[str]:
    """A path usable in bind/connect even when `path` is longer than sockaddr_un allows
    (deep pytest tmp dirs): go through /proc/self/fd of the opened parent directory."""
    if len(os.fsencode(str(path))) < _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly n bytes, or b"" if the peer closed first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return bytes(buf)


class SocketPipe:
    """Host end of STATE/dfu.sock (opened by `--device virtual:STATE_DIR`)."""

    def __init__(self, state_dir: Path) -> None:
        self.name = f"virtual:{state_dir}"
        path = state_dir / SOCKET_NAME
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with unix_path(path) as p:
                self._sock.connect(p)
        except OSError as e:
            self._sock.close()
            raise DeviceGone(f"{self.name}: no virtual Core in DFU mode at {path} ({e.strerror}); start one with "
                             f"`sparkflash virtual-core --state {state_dir}`") from e

    def control(self, req: ControlRequest, timeout: float) -> bytes:
        self._sock.settimeout(timeout)
        head = REQUEST.pack(req.bmRequestType, req.bRequest, req.wValue, req.wIndex, req.wLength)
        try:
            self._sock.sendall(head + (b"" if req.is_in else req.data))
            reply = recv_exact(self._sock, REPLY.size)
            if not reply:
                raise DeviceGone(f"{self.name}: the device went away (request 0x{req.bRequest:02x})")
            result, length = REPLY.unpack(reply)
            data = recv_exact(self._sock, length) if length else b""
            if length and not data:
                raise DeviceGone(f"{self.name}: the device went away during a reply")
        except TimeoutError as e:
            raise TransportTimeout(f"{self.name}: no answer to request 0x{req.bRequest:02x} in {timeout:.1f} s") from e
        except (BrokenPipeError, ConnectionResetError) as e:
            raise DeviceGone(f"{self.name}: the device went away ({e.strerror})") from e
        except OSError as e:
            raise TransportError(f"{self.name}: {e}") from e
        if result == STALLED:
            raise EndpointStalled(f"{self.name}: request 0x{req.bmRequestType:02x}/{req.bRequest} "
                                  f"wValue={req.wValue} stalled")
        return data

    def close(self) -> None:
        self._sock.close()
