"""Issue #15 points 1 and 7 on serial: per-sector digests first (SUMS, or SUM per sector),
only changed sectors sent, no `f` (no reboot) for unchanged firmware; a rerun after a
killed host resynchronises at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.cli import main
from sparkflash.virtual.core import VirtualCore


def _flash(capsys: pytest.CaptureFixture[str], port: str, address: int, f: Path) -> tuple[int, dict[str, object]]:
    rc = main(["flash", "--via", "serial", "--port", port, "--address", hex(address), str(f), "--json"])
    ev = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    return rc, next(e for e in ev if e["event"] == "region-done")


def test_one_byte_change_sends_one_sector(serial_core: VirtualCore, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    f = tmp_path / "data.bin"
    data = bytearray(os.urandom(128 * 1024))
    f.write_bytes(data)
    rc, done = _flash(capsys, port, 0x80000, f)
    assert (rc, done["status"], done["bytes_sent"]) == (0, "verified", len(data))
    data[70_000] ^= 1
    f.write_bytes(data)
    rc, done = _flash(capsys, port, 0x80000, f)
    assert (rc, done["status"], done["bytes_sent"], done["sectors_skipped"]) == (0, "verified", 4096, 31)
    assert serial_core.state.external.read(0x80000, len(data)) == data
    rc, done = _flash(capsys, port, 0x80000, f)
    assert (rc, done["status"], done["bytes_sent"]) == (0, "unchanged", 0)


def test_unchanged_firmware_is_not_resent(serial_core: VirtualCore, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    ep = serial_core.endpoints["serial"]
    fw = tmp_path / "fw.bin"
    fw.write_bytes((0x20005000).to_bytes(4, "little") + (0x08005131).to_bytes(4, "little") + os.urandom(30_000))
    rc, done = _flash(capsys, port, 0x08005000, fw)
    assert (rc, done["status"]) == (0, "verified") and ep.resets == 1  # type: ignore[attr-defined]
    rc, done = _flash(capsys, port, 0x08005000, fw)
    assert (rc, done["status"], done["bytes_sent"]) == (0, "unchanged", 0)
    assert ep.resets == 1  # type: ignore[attr-defined]  # no `f`, no reboot


def test_rerun_after_killed_host_resyncs(make_core: Callable[..., VirtualCore], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    core = make_core(baud=115200)
    port = core.endpoints["serial"].port  # type: ignore[attr-defined]
    f = tmp_path / "data.bin"
    data = os.urandom(64 * 1024)
    f.write_bytes(data)
    cli = "import sys; from sparkflash.cli import main; sys.exit(main(sys.argv[1:]))"
    host = subprocess.Popen([sys.executable, "-c", cli, "flash", "--via", "serial", "--port", port,
                             "--address", "0x80000", str(f), "--json"], stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None
    for line in host.stdout:  # kill it in the middle of the YMODEM transfer
        ev = json.loads(line)
        if ev["event"] == "region-start":  # 64 KiB at 115200 baud take ~6 s
            time.sleep(1.5)
            break
    host.kill()
    host.wait()
    host.stdout.close()
    t0 = time.monotonic()
    rc, done = _flash(capsys, port, 0x80000, f)
    assert (rc, done["status"]) == (0, "verified"), done
    assert core.state.external.read(0x80000, len(data)) == data
    assert time.monotonic() - t0 < 15  # not the device's own 5 s x 6 block timeouts, then 'C' waits
