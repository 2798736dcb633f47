"""The host against the Spark Core's real serial code (2014 flasher_additions receiver,
listening-mode keys, serialSaveFile, FLASH_Begin/Update, the SST25VF016B driver, and the
2015 Ymodem.h receiver), built for the host from ../shared/peers and run on a pty."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from receiver_runner import ERASE_MAX_US, RealCore

from sparkflash.cli import main


def flash(capsys: pytest.CaptureFixture[str], port: str, address: int, file: Path,
          *flags: str) -> tuple[int, list[dict[str, Any]]]:
    rc = main(["flash", "--via", "serial", "--port", port, "--address", hex(address), str(file), "--json", *flags])
    out = capsys.readouterr()
    events = [json.loads(x) for x in out.out.splitlines() if x.startswith("{")]
    errors = [e.get("error") for e in events if e.get("event") == "region-done"]
    return rc, events + [{"stderr": out.err, "errors": errors}]


def region_done(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e.get("event") == "region-done")


def firmware(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = (0x20005000).to_bytes(4, "little") + (0x08005131).to_bytes(4, "little") + os.urandom(size - 8)
    p = tmp_path / "fw.bin"
    p.write_bytes(data)
    return p, data


def test_firmware_by_f_is_sent_not_verified(make_real: Callable[..., RealCore], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    core = make_real(mode="listen")
    fw, data = firmware(tmp_path, 64 * 1024 + 1)
    rc, ev = flash(capsys, core.port, 0x08005000, fw, "--accept-unverified")
    assert rc == 0, ev[-1]
    done = region_done(ev)
    assert done["status"] == "sent" and "CRC" in done["proves"]
    assert core.resets == 1 and core.internal(0x08005000, len(data)) == data
    assert core.external(0x60000, len(data)) == data
    # Without --accept-unverified the same honest result is not a success (exit 3).
    rc, ev = flash(capsys, core.port, 0x08005000, fw)
    assert rc == 3 and region_done(ev)["status"] == "sent"


def test_listening_mode_refuses_files_before_any_byte(make_real: Callable[..., RealCore], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    core = make_real(mode="listen")
    f = tmp_path / "font.bin"
    f.write_bytes(os.urandom(5000))
    rc, ev = flash(capsys, core.port, 0x80000, f, "--accept-unverified")
    assert rc == 2
    assert "stock firmware without the sparkflash agent" in ev[-1]["stderr"]
    assert core.external(0x80000, 0x2000) == b"\xff" * 0x2000 and core.resets == 0


def test_serial_save_file_application(make_real: Callable[..., RealCore], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    core = make_real(mode="save", address=0x80000)
    f = tmp_path / "web.pack"
    data = os.urandom(10_000)
    f.write_bytes(data)
    rc, ev = flash(capsys, core.port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified")
    assert rc == 0, ev[-1]
    assert region_done(ev)["status"] == "sent"
    # The receiver stores whole blocks: 0x1A padding up to the 128-byte block end.
    assert core.external(0x80000, 10_112) == data + b"\x1a" * 112
    assert core.external(0x80000 + 10_112, 16) == b"\xff" * 16


@pytest.mark.parametrize("flags,why", [
    (["--stock-save-address", "0x80000"], "saves only to 0x080000"),
    ([], "pass --stock-save-address"),
])
def test_serial_save_file_other_address_refused(make_real: Callable[..., RealCore], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str], flags: list[str], why: str) -> None:
    core = make_real(mode="save", address=0x80000)
    f = tmp_path / "web.pack"
    f.write_bytes(os.urandom(3000))
    rc, ev = flash(capsys, core.port, 0x90000, f, *flags, "--accept-unverified")
    assert rc == 2 and why in ev[-1]["stderr"]
    assert core.external(0x80000, 0x20000) == b"\xff" * 0x20000


def test_lost_ack_recovered(make_real: Callable[..., RealCore], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    core = make_real(mode="save", address=0x80000, drop_ack=5)  # the ACK of data block 4
    f = tmp_path / "web.pack"
    data = os.urandom(20_000)
    f.write_bytes(data)
    rc, ev = flash(capsys, core.port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified",
                   "--timeout", "2")
    assert rc == 0, ev[-1]
    done = region_done(ev)
    assert done["status"] == "sent" and done["retries"] >= 1  # resent, NAKed as a duplicate, moved on
    assert core.external(0x80000, len(data)) == data


@pytest.mark.timeout(120)
def test_large_file_at_datasheet_maximum_erase_time(make_real: Callable[..., RealCore], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """1.5 MiB into the 2015 receiver: it erases 384 sectors (9.6 s at 25 ms) before the header ACK."""
    core = make_real(mode="save2015", address=0x80000, erase_us=ERASE_MAX_US)
    f = tmp_path / "big.bin"
    data = os.urandom(0x180000)
    f.write_bytes(data)
    rc, ev = flash(capsys, core.port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified")
    assert rc == 0, ev[-1]
    done = region_done(ev)
    assert done["status"] == "sent" and done["retries"] == 0  # no block went twice
    assert core.external(0x80000, len(data)) == data


@pytest.mark.parametrize("bridge", ["socket", "rfc2217"])
def test_network_ports_survive_the_reset(make_real: Callable[..., RealCore], tmp_path: Path, tool: Callable[[str], str],
                                         capsys: pytest.CaptureFixture[str], bridge: str) -> None:
    from net_bridges import rfc2217_server, socat_server

    core = make_real(mode="listen")
    fw, data = firmware(tmp_path, 30_000)
    server = socat_server(tool("socat"), core.port) if bridge == "socket" else rfc2217_server(core.port)
    with server as url:
        rc, ev = flash(capsys, url, 0x08005000, fw, "--accept-unverified")
        assert rc == 0, ev[-1]
        assert region_done(ev)["status"] == "sent"
        assert core.resets == 1 and core.internal(0x08005000, len(data)) == data
        # and the device answers again through the same URL after its reset
        rc, ev = flash(capsys, url, 0x08005000, fw, "--accept-unverified")
        assert rc == 0, ev[-1]
        assert core.resets == 2
