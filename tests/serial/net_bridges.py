"""Network bridges to a pty Core, as a user would run them: socat for `socket://`, and an
RFC 2217 server built from pyserial's own PortManager for `rfc2217://`. Each TCP client
gets the port path opened afresh, so a Core that resets (new pty) is reached again."""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import serial.rfc2217

import serial


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def socat_server(socat: str, tty: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                             f"FILE:{tty},raw,echo=0"], stderr=subprocess.DEVNULL)
    try:
        # Ready once the port is taken. Never probe by connecting: with `fork` that would start a
        # second socat child on the same tty, racing the host's for the device's reply bytes.
        for _ in range(200):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    break
            time.sleep(0.05)
        yield f"socket://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


class _PtyModemLines:
    """A pty has no modem lines (TIOCMGET fails): report them low, pass the rest through."""

    cts = dsr = ri = cd = rts = dtr = break_condition = False
    _LOCAL = frozenset({"rts", "dtr", "break_condition"})

    def __init__(self, ser: serial.Serial) -> None:
        object.__setattr__(self, "_ser", ser)

    def __getattr__(self, name: str) -> object:
        return getattr(self._ser, name)

    def __setattr__(self, name: str, value: object) -> None:
        if name in self._LOCAL:
            object.__setattr__(self, name, value)
        else:
            setattr(self._ser, name, value)


class _Rfc2217Client(threading.Thread):
    def __init__(self, conn: socket.socket, tty: str) -> None:
        super().__init__(daemon=True)
        self.conn, self.tty = conn, tty

    def run(self) -> None:
        try:
            ser = serial.serial_for_url(self.tty, timeout=0, do_not_open=True)
            ser.open()
        except (serial.SerialException, OSError):
            self.conn.close()  # the Core is resetting: the client retries
            return
        mgr = serial.rfc2217.PortManager(_PtyModemLines(ser), self)
        try:
            while True:
                r, _, _ = select.select([self.conn, ser.fileno()], [], [], 0.2)
                if self.conn in r:
                    data = self.conn.recv(4096)
                    if not data:
                        return
                    ser.write(b"".join(mgr.filter(data)))
                if ser.fileno() in r:
                    data = ser.read(4096)
                    if not data:
                        return
                    self.conn.sendall(b"".join(mgr.escape(data)))
        except (serial.SerialException, OSError):
            return
        finally:
            ser.close()
            self.conn.close()

    def write(self, data: bytes) -> None:  # PortManager's connection: option replies
        self.conn.sendall(data)


@contextlib.contextmanager
def rfc2217_server(tty: str) -> Iterator[str]:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            _Rfc2217Client(conn, tty).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"rfc2217://127.0.0.1:{port}"
    finally:
        stop.set()
        t.join(2)
        srv.close()
