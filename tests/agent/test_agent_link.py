"""The C agent's YMODEM receiver over a real link: lrzsz's sender, a corrupted byte, a lost
ACK, and a host killed in the middle of a transfer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_proxy import FaultProxy
from sfa_harness import HostAgent, ask

from sparkflash.boards import load_board
from sparkflash.deploy.serial_ymodem import SerialFlasher
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import digests
from sparkflash.protocols import listening as L
from sparkflash.transports.serial_port import open_serial

BOARD = load_board("spark-core")


def region(address: int, data: bytes) -> Region:
    sha, crc = digests(data)
    return Region("file", "external", address, len(data), sha, crc,
                  tuple(BOARD.memory("external").sectors(address, len(data))))


@pytest.mark.interop
@pytest.mark.parametrize("flags", [["-k"], []], ids=["1k", "128"])
def test_sb_into_save(host_agent: HostAgent, tmp_path: Path, flags: list[str], tool: Callable[[str], str]) -> None:
    tool("sb")
    socat = tool("socat")
    send = tmp_path / "send"
    send.mkdir()
    data = os.urandom(50_003)
    (send / "file.bin").write_bytes(data)
    link = open_serial(host_agent.port)
    try:
        link.drain_input()
        link.write(L.encode_save(0x80000, len(data)))
        line = b""
        while not line.endswith(b"\n"):  # byte by byte: the receiver's first 'C' is left for sb
            b = link.read(1, 5.0)
            assert b, "no reply to SAVE"
            line += b
        assert line == b"OK\r\n"
    finally:
        link.close()  # the agent keeps waiting for a sender across the reopen
    proc = subprocess.Popen([socat, f"FILE:{host_agent.port},raw,echo=0", f"EXEC:sb --ymodem {' '.join(flags)} file.bin,pipes"],
                            cwd=send, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        rc = proc.wait(60)
        assert rc == 0, proc.stderr.read() if proc.stderr else rc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert host_agent.read_external(0x80000, len(data)) == data
    assert ask(host_agent.port, b"ID\n") == f"OK {host_agent.device_id}"


@pytest.mark.parametrize("fault", ["flip", "lost-ack"])
def test_link_faults_recovered(host_agent: HostAgent, tmp_path: Path, fault: str) -> None:
    data = os.urandom(6_000)
    kw = {"flip_at": 2500} if fault == "flip" else {"drop_ack": 3}  # inside block 2; block 2's ACK
    proxy = FaultProxy(host_agent.port, str(tmp_path / "proxy-tty"), **kw)  # type: ignore[arg-type]
    try:
        flasher = SerialFlasher(proxy.port, BOARD, timeout=2.0)
        try:
            r = region(0x100800, data)
            report = flasher.write_region(r, data, lambda done, total: None)
            assert flasher.device_digest(r) == (r.crc32, r.sha256)
        finally:
            flasher.close()
        assert (proxy.flipped, proxy.dropped) == ((1, 0) if fault == "flip" else (0, 1))
        assert report.retries >= 1  # recovered inside the session (a resend), not by luck
    finally:
        proxy.close()
    assert host_agent.read_external(0x100800, len(data)) == data


def test_host_killed_mid_ymodem_then_rerun(host_agent: HostAgent, tmp_path: Path) -> None:
    data = os.urandom(400_000)
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    cmd = [sys.executable, "-m", "sparkflash", "flash", str(f), "--address", "0x100000", "--via", "serial",
           "--port", host_agent.port]
    victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 30
        while host_agent.read_external(0x100000 + 0x4000, 16) != data[0x4000:0x4010]:  # a few blocks landed
            assert victim.poll() is None and time.monotonic() < end, "the first flash ended before it could be killed"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert host_agent.read_external(0x100000, len(data)) != data  # it really was cut short
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert host_agent.read_external(0x100000, len(data)) == data
