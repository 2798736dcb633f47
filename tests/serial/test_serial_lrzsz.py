"""Interop with lrzsz (ymodem.md §8.2): our sender -> `rb --ymodem`, `sb --ymodem` -> the virtual Core.

lrzsz gets pipes through socat's EXEC (its tty ioctls then fail harmlessly and its exit
flush cannot eat the last ACK); our side gets the pty.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.protocols import listening as L
from sparkflash.protocols import ymodem as Y
from sparkflash.transports.drive import drive
from sparkflash.transports.serial_port import open_serial
from sparkflash.virtual.core import VirtualCore

pytestmark = pytest.mark.interop


def _wait_for(path: Path, proc: subprocess.Popen[bytes], seconds: float = 5.0) -> None:
    end = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > end:
            raise AssertionError(f"socat did not create {path}: {proc.communicate()[1]!r}")
        time.sleep(0.02)


@pytest.mark.parametrize("size", [1, 150_003])
def test_our_sender_to_rb(tmp_path: Path, size: int, tool: Callable[[str], str]) -> None:
    tool("rb")
    socat = tool("socat")
    recv = tmp_path / "recv"
    recv.mkdir()
    link_path = tmp_path / f"ymRX{size}"
    data = os.urandom(size)
    proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={link_path}", "EXEC:rb --ymodem -y,pipes"],
                            cwd=recv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(link_path, proc)
        link = open_serial(str(link_path))
        sender = Y.Sender("payload.bin", data)
        try:
            drive(link, sender, lambda ev: None)
        finally:
            link.close()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert (recv / "payload.bin").read_bytes() == data
    assert sender.done and sender.retries == 0


@pytest.mark.parametrize("flags", [["-k"], []], ids=["1k", "128"])
def test_sb_to_the_virtual_core(serial_core: VirtualCore, tmp_path: Path, flags: list[str],
                                tool: Callable[[str], str]) -> None:
    tool("sb")
    socat = tool("socat")
    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    send = tmp_path / "send"
    send.mkdir()
    data = os.urandom(100_003)
    (send / "file.bin").write_bytes(data)
    link = open_serial(port)
    try:  # our extension first: where the file goes
        link.drain_input()
        link.write(L.encode_save(0x80000, len(data)))
        line = b""
        while not line.endswith(b"\n"):  # byte by byte: the receiver's first 'C' is left for sb
            b = link.read(1, 5.0)
            assert b, "no reply to SAVE"
            line += b
        assert line == b"OK\r\n"
    finally:
        link.close()
    proc = subprocess.Popen([socat, f"FILE:{port},raw,echo=0", f"EXEC:sb --ymodem {' '.join(flags)} file.bin,pipes"],
                            cwd=send, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.wait(60) == 0, proc.communicate()[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert serial_core.state.external.read(0x80000, len(data)) == data
