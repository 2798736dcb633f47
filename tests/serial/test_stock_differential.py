"""One case list, two devices: the real receivers built for the host and the virtual Core's
`stock` serial mode must give the same results (exit code, status, bytes on flash)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_real_receiver import firmware, flash, region_done

from sparkflash.virtual.core import VirtualCore

CLI = "import sys; from sparkflash.cli import main; sys.exit(main(sys.argv[1:]))"


class Dev:
    """The two kinds of device behind one small interface."""

    def __init__(self, port: str, external: Callable[[int, int], bytes], internal: Callable[[int, int], bytes],
                 resets: Callable[[], int]) -> None:
        self.port, self.external, self.internal, self.resets = port, external, internal, resets


@pytest.fixture(params=["real", "virtual"])
def device(request: pytest.FixtureRequest, make_real: Callable[..., Any], make_core: Callable[..., VirtualCore]
           ) -> Callable[..., Dev]:
    def make(mode: str, address: int = 0x80000, receiver: str = "2014") -> Dev:
        if request.param == "real":
            real_mode = {"stock": "listen", "stock-save": "save" if receiver == "2014" else "save2015"}[mode]
            c = make_real(mode=real_mode, address=address)
            return Dev(c.port, c.external, c.internal, lambda: c.resets)
        v = make_core(serial_mode=mode, stock_save_address=address, stock_receiver=receiver)
        ep = v.endpoints["serial"]
        return Dev(ep.port, v.state.external.read, v.state.internal.read, lambda: ep.resets)  # type: ignore[attr-defined]
    return make


def test_firmware_by_f(device: Callable[..., Dev], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = device("stock")
    fw, data = firmware(tmp_path, 40_001)
    rc, ev = flash(capsys, d.port, 0x08005000, fw, "--accept-unverified")
    assert (rc, region_done(ev)["status"]) == (0, "sent"), ev[-1]
    assert d.resets() == 1 and d.internal(0x08005000, len(data)) == data


def test_file_refused_by_listening_mode(device: Callable[..., Dev], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    d = device("stock")
    f = tmp_path / "a.bin"
    f.write_bytes(os.urandom(100))
    rc, ev = flash(capsys, d.port, 0x80000, f, "--accept-unverified")
    assert rc == 2 and "without the sparkflash agent" in ev[-1]["stderr"]


@pytest.mark.parametrize("size", [1, 128, 129, 1024, 1025, 10_000])
def test_save_file_and_padding(device: Callable[..., Dev], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               size: int) -> None:
    d = device("stock-save")
    f = tmp_path / "a b.bin"  # a name with a space
    data = os.urandom(size)
    f.write_bytes(data)
    rc, ev = flash(capsys, d.port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified")
    assert (rc, region_done(ev)["status"]) == (0, "sent"), ev[-1]
    from sparkflash.protocols.ymodem import padded_size

    pad = padded_size(size) - size
    assert d.external(0x80000, size + pad + 1) == data + b"\x1a" * pad + b"\xff"


def test_too_big_for_2014(device: Callable[..., Dev], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = device("stock-save")
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(0x1B001))
    rc, ev = flash(capsys, d.port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified")
    assert rc == 5 and "higher than the allowed space" in region_done(ev)["error"]
    assert d.external(0x80000, 16) == b"\xff" * 16  # refused before erasing


def test_2015_takes_more_than_0x1b000(device: Callable[..., Dev], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    d = device("stock-save", receiver="2015")
    f = tmp_path / "big.bin"
    data = os.urandom(0x1B001)
    f.write_bytes(data)
    rc, ev = flash(capsys, d.port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified")
    assert rc == 0, ev[-1]
    assert d.external(0x80000, len(data)) == data


# -- line faults and raw sessions: the receiver's own rules ------------------------------------
@pytest.fixture(params=["real", "virtual"])
def save_app(request: pytest.FixtureRequest, make_real: Callable[..., Any], make_core: Callable[..., VirtualCore]
             ) -> Callable[..., Any]:
    """save_app(address, **faults) -> (port, read(addr, n), write(addr, data)) of an app in serialSaveFile."""
    def make(address: int = 0x80000, drop_ack: int = -1, corrupt_at: int = -1) -> tuple[str, Any, Any]:
        if request.param == "real":
            c = make_real(mode="save", address=address, drop_ack=drop_ack, corrupt_at=corrupt_at)
            return c.port, c.external, c.write_external
        faults = [f"corrupt@{corrupt_at}"] if corrupt_at >= 0 else []
        v = make_core(faults=faults, serial_mode="stock-save", stock_save_address=address,
                      drop_ack=drop_ack if drop_ack > 0 else None)
        return v.endpoints["serial"].port, v.state.external.read, v.state.external.program  # type: ignore[attr-defined]
    return make


# Detection sends `i` and CAN x 8; then the 133-byte header, then block 1 (3-byte head).
FIRST_PAYLOAD_BYTE = 1 + 8 + 133 + 3


def test_no_crc_check_a_flipped_byte_is_stored(save_app: Callable[..., Any], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    port, read, _ = save_app(corrupt_at=FIRST_PAYLOAD_BYTE + 50)
    f = tmp_path / "a.bin"
    data = os.urandom(5000)
    f.write_bytes(data)
    rc, ev = flash(capsys, port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified")
    assert (rc, region_done(ev)["status"]) == (0, "sent"), ev[-1]  # "sent" is all that can be said
    stored = read(0x80000, len(data))
    assert stored != data and stored[:50] + bytes([stored[50] ^ 0xFF]) + stored[51:] == data


def test_lost_ack_is_recovered(save_app: Callable[..., Any], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    port, read, _ = save_app(drop_ack=6)  # past the ACKs of detection's cancel: a data block's
    f = tmp_path / "a.bin"
    data = os.urandom(9000)
    f.write_bytes(data)
    rc, ev = flash(capsys, port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified",
                   "--timeout", "3")
    assert (rc, region_done(ev)["status"]) == (0, "sent"), ev[-1]
    assert region_done(ev)["retries"] >= 1 and read(0x80000, len(data)) == data


def _raw(port: str) -> Any:
    from sparkflash.transports.serial_port import open_serial

    link = open_serial(port)
    link.drain_input()
    return link


def _read_until(link: Any, want: bytes, seconds: float) -> bytes:
    import time

    buf, end = b"", time.monotonic() + seconds
    while want not in buf and time.monotonic() < end:
        buf += link.read(4096, 0.1)
    return buf


def test_header_ack_comes_after_erasing_the_announced_size(save_app: Callable[..., Any]) -> None:
    from sparkflash.protocols import ymodem as Y

    port, read, write = save_app()
    write(0x80000, bytes(4 * 4096))  # four sectors of zeros
    link = _raw(port)
    try:
        link.write(Y.encode_header("x", 3 * 4096 - 5))  # announces 3 sectors' worth
        assert bytes([Y.ACK]) in _read_until(link, bytes([Y.ACK]), 5)
        assert read(0x80000, 3 * 4096) == b"\xff" * (3 * 4096)  # erased before the ACK
        assert read(0x83000, 4096) == bytes(4096)  # the fourth untouched
        link.write(Y.CANCEL)
        assert b"Failed to receive the file!" in _read_until(link, b"file!", 3)
    finally:
        link.close()


def test_unaligned_address_fails_after_erasing_the_sector_start(save_app: Callable[..., Any]) -> None:
    from sparkflash.errors import ProtocolError
    from sparkflash.protocols import ymodem as Y
    from sparkflash.transports.drive import drive

    port, read, write = save_app(address=0x80800)
    write(0x80000, b"\x55" * 0x800)  # bytes before the app's address, same sector
    write(0x81000, bytes(4096))  # the next sector holds data: not erased by ceil(4096/4096)=1
    link = _raw(port)
    sender = Y.Sender("x", os.urandom(4096), timeouts=Y.SenderTimeouts(start=5, block_ack=3))
    try:
        with pytest.raises(ProtocolError, match="cancelled"):
            drive(link, sender, lambda _e: None)
        assert b"Verification failed!" in sender.take_rest() + _read_until(link, b"failed!", 3)
    finally:
        link.close()
    assert read(0x80000, 0x800) == b"\xff" * 0x800  # lost with the sector erase


@pytest.mark.parametrize("bridge", ["socket", "rfc2217"])
def test_firmware_by_f_through_network_ports(device: Callable[..., Dev], tmp_path: Path, tool: Callable[[str], str],
                                              capsys: pytest.CaptureFixture[str], bridge: str) -> None:
    from net_bridges import rfc2217_server, socat_server

    d = device("stock")
    fw, data = firmware(tmp_path, 20_000)
    with socat_server(tool("socat"), d.port) if bridge == "socket" else rfc2217_server(d.port) as url:
        rc, ev = flash(capsys, url, 0x08005000, fw, "--accept-unverified")
    assert (rc, region_done(ev)["status"]) == (0, "sent"), ev[-1]
    assert d.resets() == 1 and d.internal(0x08005000, len(data)) == data


@pytest.mark.slow  # ~18 s; tests/serial/test_serial_skip.py covers the virtual agent in CI
def test_rerun_after_a_killed_host_resyncs(make_real: Callable[..., Any], make_core: Callable[..., VirtualCore],
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Kill the host in the middle of `f`, on both devices; the next run cancels the
    receiver's session, finds listening mode again and succeeds."""
    import json
    import subprocess
    import time

    real = make_real(mode="listen", baud=115200)
    virtual = make_core(baud=115200, serial_mode="stock")
    devices = [(real.port, real.internal, lambda: real.resets),
               (virtual.endpoints["serial"].port, virtual.state.internal.read,  # type: ignore[attr-defined]
                lambda: virtual.endpoints["serial"].resets)]  # type: ignore[attr-defined]
    fw, data = firmware(tmp_path, 40_000)
    for port, internal, resets in devices:
        host = subprocess.Popen([sys.executable, "-c", CLI, "flash", "--via", "serial", "--port", port,
                                 "--address", "0x08005000", str(fw), "--json", "--accept-unverified"],
                                stdout=subprocess.PIPE, text=True)
        assert host.stdout is not None
        for line in host.stdout:
            if json.loads(line)["event"] == "region-start":  # 40 KB at 115200 baud: ~3.5 s
                time.sleep(1.5)
                break
        host.kill()
        host.wait()
        host.stdout.close()
        assert resets() == 0  # it really was interrupted
        rc, ev = flash(capsys, port, 0x08005000, fw, "--accept-unverified")
        assert (rc, region_done(ev)["status"]) == (0, "sent"), ev[-1]
        assert resets() == 1 and internal(0x08005000, len(data)) == data


def test_size_is_decimal_up_to_the_first_space(save_app: Callable[..., Any]) -> None:
    """`8192junk 99`: strtoul reads 8192 (2 sectors erased before the ACK), the rest is ignored."""
    from sparkflash.protocols import ymodem as Y

    port, read, write = save_app()
    write(0x80000, bytes(3 * 4096))
    link = _raw(port)
    try:
        link.write(Y.encode_block(0, (b"x\0" + b"8192junk 99").ljust(128, b"\0")))
        assert bytes([Y.ACK]) in _read_until(link, bytes([Y.ACK]), 5)
        assert read(0x80000, 2 * 4096) == b"\xff" * (2 * 4096) and read(0x82000, 4096) == bytes(4096)
        link.write(Y.CANCEL)
    finally:
        link.close()


def test_virtual_core_command_selects_the_stock_mode(tmp_path: Path) -> None:
    import json
    import subprocess

    from sparkflash.protocols import serial_caps as C
    from sparkflash.transports.serial_port import open_serial

    proc = subprocess.Popen([sys.executable, "-c", CLI, "virtual-core", "--state", str(tmp_path / "core"),
                             "--endpoints", "serial",
                             "--serial-mode", "stock", "--json"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        link = open_serial(info["serial"])
        try:
            link.write(b"i")
            buf = _read_until(link, b"\n", 3)
            buf += _read_until(link, b"never", 0.7)  # an agent would add its line now
        finally:
            link.close()
        did, version, receiver = C.parse_identity(buf)
        assert did == info["device_id"] and version is None and not receiver
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.timeout(25)  # far less than the 60 s header wait: recovered on the receiver's 'C'
def test_lost_header_ack_is_recovered_at_once(save_app: Callable[..., Any]) -> None:
    from sparkflash.protocols import ymodem as Y
    from sparkflash.transports.drive import drive

    port, read, _ = save_app(drop_ack=1)  # no detection here: the first ACK is the header's
    link = _raw(port)
    data = os.urandom(3000)
    sender = Y.Sender("x", data, timeouts=Y.SenderTimeouts(start=5, header_ack=60), stock_receiver=True)
    try:
        drive(link, sender, lambda _e: None)
    finally:
        link.close()
    assert sender.duplicates == 1 and read(0x80000, len(data)) == data
