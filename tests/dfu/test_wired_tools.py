"""`sparkflash read`, `erase`, `reset`, `devices` and `monitor` against the virtual Core (#15 point 3)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cli import main
from sparkflash.virtual.core import CoreOptions, VirtualCore


def dev(core: VirtualCore) -> list[str]:
    return ["--device", f"virtual:{core.state.path}"]


def last_json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(capsys.readouterr().out.splitlines()[-1])
    return doc


def test_read_writes_the_range_to_a_file(dfu_core: VirtualCore, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = os.urandom(5000)
    dfu_core.state.external.write_erased(0x90123, data)
    out = tmp_path / "dump.bin"
    assert main(["read", "0x90123", "5000", "-o", str(out), *dev(dfu_core), "--json"]) == 0
    assert out.read_bytes() == data
    doc = last_json(capsys)
    assert (doc["address"], doc["size"], doc["ok"]) == (0x90123, 5000, True)
    # the bootloader is protected against writes, not reads
    assert main(["read", "0x08000000", "0x400", "-o", str(tmp_path / "bl.bin"), *dev(dfu_core)]) == 0
    assert (tmp_path / "bl.bin").read_bytes() == dfu_core.state.internal.read(0x08000000, 0x400)


@pytest.mark.parametrize(("argv", "message"), [
    (["0x1FF000", "0x2000"], "runs past the end of external flash"),
    (["0x30000000", "16"], "in no memory"),
    (["0x80000", "0"], "length must be positive"),
])
def test_read_refuses_bad_ranges(dfu_core: VirtualCore, tmp_path: Path, argv: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["read", *argv, "-o", str(tmp_path / "x"), *dev(dfu_core)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_read_by_serial_says_what_to_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["read", "0x80000", "16", "-o", str(tmp_path / "x"), "--via", "serial", "-p", "/dev/null"]) == 2
    assert "--via dfu" in capsys.readouterr().err


def test_erase_blanks_whole_sectors_and_keeps_neighbours(dfu_core: VirtualCore,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ext = dfu_core.state.external
    ext.write_erased(0x8F000, b"\x11" * 0x4000)
    ext.erase_sector(0x90000)  # one sector already blank: not erased again
    erased = ext.erase_count
    assert main(["erase", "0x90000", "0x2000", *dev(dfu_core), "--json"]) == 0
    doc = last_json(capsys)
    assert (doc["sectors"], doc["already_blank"], doc["status"]) == (2, 1, "verified")
    assert ext.erase_count - erased == 1
    assert ext.read(0x90000, 0x2000) == b"\xff" * 0x2000
    assert ext.read(0x8F000, 0x1000) == b"\x11" * 0x1000 and ext.read(0x92000, 0x1000) == b"\x11" * 0x1000


def test_erase_refuses_unaligned_and_protected(dfu_core: VirtualCore, capsys: pytest.CaptureFixture[str]) -> None:
    key = dfu_core.state.external.read(0x2000, 0x1000)
    assert main(["erase", "0x90010", "0x100", *dev(dfu_core)]) == 2
    assert "covering range is 0x00090000 0x1000" in capsys.readouterr().err
    assert main(["erase", "0x2000", "0x1000", *dev(dfu_core)]) == 2
    assert "protected area 'device_key'" in capsys.readouterr().err
    assert dfu_core.state.external.read(0x2000, 0x1000) == key


def test_reset_leaves_dfu_mode(dfu_core: VirtualCore, capsys: pytest.CaptureFixture[str]) -> None:
    ep: Any = dfu_core.endpoints["dfu"]
    assert main(["reset", *dev(dfu_core), "--json"]) == 0
    assert ep.reset_done.wait(5) and ep.resets == 1
    assert "left DFU mode" in last_json(capsys)["message"]


def test_devices_lists_virtual_and_cloud_cores(virtual_core: Any, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from sparkflash.cloud import CloudServer, DeviceRegistry, ServerThread

    srv = CloudServer(rsa.generate_private_key(public_exponent=65537, key_size=2048), DeviceRegistry(tmp_path / "reg"),
                      host="127.0.0.1", port=0, admin=("127.0.0.1", 0), token="t0ken")
    (tmp_path / "token").write_text("t0ken")
    ident = virtual_core.state.info["device_id"]
    srv.registry.register(ident, virtual_core.state.device_public_pem())
    with ServerThread(srv):
        host, port = srv.admin_addr
        assert main(["devices", "--virtual", str(virtual_core.state.path), "--cloud", f"http://{host}:{port}",
                     "--cloud-token", str(tmp_path / "token"), "--json"]) == 0
    doc = last_json(capsys)
    got = {(d["kind"], d["device"], d["id"]) for d in doc["devices"]}
    assert ("dfu", f"virtual:{virtual_core.state.path}", ident) in got
    assert ("serial", str(virtual_core.state.path / "tty"), ident) in got
    assert ("cloud", ident, ident) in got


def test_devices_reports_an_unreachable_cloud(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "token").write_text("t0ken")
    assert main(["devices", "--cloud", "http://127.0.0.1:9", "--cloud-token", str(tmp_path / "token"), "--json"]) == 4
    doc = last_json(capsys)
    assert not doc["ok"] and "cloud" in doc["problems"][0]


def test_monitor_is_a_terminal_on_the_cores_port(core_dir: Path) -> None:
    core = VirtualCore(core_dir, CoreOptions(dfu_poll=False, endpoints=("serial",))).start()
    master, slave = pty.openpty()
    try:
        port = str(core_dir / "tty")
        proc = subprocess.Popen([sys.executable, "-m", "sparkflash", "monitor", port], stdin=slave, stdout=slave,
                                stderr=slave, env=os.environ.copy(), close_fds=True)
        seen = b""

        def until(token: bytes, seconds: float = 10) -> bool:
            nonlocal seen
            end = time.monotonic() + seconds
            while token not in seen and time.monotonic() < end:
                if select.select([master], [], [], 0.1)[0]:
                    seen += os.read(master, 4096)
            return token in seen

        assert until(b"Ctrl-] quits"), seen
        os.write(master, b"i")
        assert until(f"Your core id is {core.state.info['device_id']}".encode()), seen
        os.write(master, b"\x1d")
        assert proc.wait(10) == 0
    finally:
        os.close(master)
        os.close(slave)
        core.stop()


def test_reset_into_dfu_needs_the_serial_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reset", "--via", "serial", "--dfu"]) == 2
    assert "needs --port" in capsys.readouterr().err


def test_several_devices_for_a_one_device_command(dfu_core: VirtualCore, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["read", "0x80000", "16", "-o", str(tmp_path / "x"), *dev(dfu_core), *dev(dfu_core)]) == 2
    assert "acts on one device" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["read", "0x80000", "0", "-o", "x.bin"], ["erase", "0x80001", "0x1000"],
                                  ["read", "0x300000", "0x10", "-o", "x.bin"]])
def test_bad_ranges_are_refused_before_any_device_is_opened(argv: list[str], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # no device exists at this virtual path: a range check that came after opening would exit 4 instead of 2
    assert main([*argv, "-d", f"virtual:{tmp_path / 'no-core'}"]) == 2
    assert "no virtual Core" not in capsys.readouterr().err
