"""Acceptance against the REAL device protocol code built for the host (tests/peers/ota_harness).

stock = core-communication-lib master (0.3.x), flasher = its feature/flasher_additions
branch (SaveBegin), deviceos = Device OS v0.4.9 communication/. Every check reads the
device's own flash image, not our bookkeeping.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cloud import CloudServer
from sparkflash.deploy.base import DeployResult
from sparkflash.deploy.ota import deploy
from sparkflash.deploy.run import Ledger
from sparkflash.fleet import open_store

FW = 0x08005000


def admin_url(cloud: CloudServer) -> str:
    assert cloud.admin_addr is not None
    host, port = cloud.admin_addr[:2]
    return f"http://{host}:{port}"


def wait_connected(cloud: CloudServer, device: str, timeout: float = 20.0) -> None:
    import time

    end = time.monotonic() + timeout
    while device not in cloud.sessions:
        assert time.monotonic() < end, f"device {device} never connected"
        time.sleep(0.02)


def run(cloud: CloudServer, release: Any, devices: list[str], timeout: float = 20.0) -> list[DeployResult]:
    for d in devices:
        wait_connected(cloud, d)
    args = argparse.Namespace(device=devices, cloud=admin_url(cloud), timeout=timeout, allow_downgrade=False)
    return deploy(args, release, list(release.manifest.regions), lambda e: None, Ledger())


@pytest.mark.parametrize("kind", ["stock", "flasher", "deviceos"])
def test_firmware_boots_on_real_code(kind: str, make_real_core: Callable[..., Any], make_release: Callable[..., Any],
                                     cloud: CloudServer, tmp_path: Path) -> None:
    core = make_real_core(kind)
    fw = os.urandom(20_000)
    rel = make_release(tmp_path / "store", [("firmware", FW, fw)])
    [res] = run(cloud, rel, [core.device_id])
    assert core.internal(FW, len(fw)) == fw
    assert [r.status for r in res.regions] == ["booted"], res.to_json()
    assert res.ok and res.exit_code == 0


def test_files_acknowledged_on_flasher_additions(make_real_core: Callable[..., Any], make_release: Callable[..., Any],
                                                 cloud: CloudServer, tmp_path: Path) -> None:
    core = make_real_core("flasher", properties={"save_begin": True})
    a, b, fw = os.urandom(10_000), os.urandom(5_000), os.urandom(9_000)
    rel = make_release(tmp_path / "store", [("a", 0x80000, a), ("b", 0x100000, b), ("firmware", FW, fw)])
    [res] = run(cloud, rel, [core.device_id])
    assert [r.status for r in res.regions] == ["acknowledged", "acknowledged", "booted"], res.to_json()
    assert res.ok and res.exit_code == 0
    assert core.flash(0x80000, len(a)) == a and core.flash(0x100000, len(b)) == b
    assert core.internal(FW, len(fw)) == fw
    doc = res.to_json()["regions"][0]
    assert "CRC-32" in doc["proves"] and "nothing read" in doc["proves"]
    res.accepted = frozenset({"verified", "unchanged"})  # --require-verified
    assert not res.ok and res.exit_code == 3


@pytest.mark.parametrize("kind", ["stock", "deviceos"])
def test_file_refused_before_any_byte(kind: str, make_real_core: Callable[..., Any], make_release: Callable[..., Any],
                                      cloud: CloudServer, tmp_path: Path) -> None:
    # Device OS: even a (wrong) save_begin declaration must not make us send SaveBegin
    core = make_real_core(kind, properties={"save_begin": True} if kind == "deviceos" else None)
    before = core.digest()
    rel = make_release(tmp_path / "store", [("firmware", FW, os.urandom(4000)), ("file", 0x80000, os.urandom(3000))])
    [res] = run(cloud, rel, [core.device_id])
    assert [r.status for r in res.regions] == ["skipped", "failed"]
    err = res.regions[1].error or ""
    assert "--via serial" in err and "--via dfu" in err, err
    assert ("Device OS" if kind == "deviceos" else "stock 0.3.x") in err
    assert res.exit_code == 2
    assert core.digest() == before and core.count(r"begin .*") == 0 and core.count(r"chunk .*") == 0


def test_wrong_save_begin_declaration_fails_fast(make_real_core: Callable[..., Any], make_release: Callable[..., Any],
                                                cloud: CloudServer, tmp_path: Path) -> None:
    """Stock 0.3.x registered as flasher_additions: it ignores SaveBegin (no ACK) and nothing is erased."""
    core = make_real_core("stock", properties={"save_begin": True})
    before = core.digest()
    rel = make_release(tmp_path / "store", [("file", 0x80000, os.urandom(3000))])
    [res] = run(cloud, rel, [core.device_id])
    assert res.regions[0].status == "failed" and "did not even acknowledge SaveBegin" in (res.regions[0].error or "")
    assert res.exit_code == 5
    assert core.digest() == before


def test_key_sector_refused_before_sending(make_real_core: Callable[..., Any], make_release: Callable[..., Any],
                                           cloud: CloudServer, tmp_path: Path) -> None:
    core = make_real_core("flasher", properties={"save_begin": True})
    before = core.digest()
    rel = make_release(tmp_path / "store", [("server-key", 0x1000, os.urandom(294))])
    [res] = run(cloud, rel, [core.device_id])
    assert res.regions[0].status == "failed" and res.exit_code == 2
    assert "server_key" in (res.regions[0].error or "") and "DFU" in (res.regions[0].error or "")
    assert core.digest() == before and core.count(r"begin .*") == 0


@pytest.mark.parametrize("kind", ["flasher", "deviceos"])
def test_bad_crc_chunk_resent(kind: str, make_real_core: Callable[..., Any], make_release: Callable[..., Any],
                              cloud: CloudServer, tmp_path: Path) -> None:
    core = make_real_core(kind, "--corrupt-chunk", "3", properties={"save_begin": True})
    data = os.urandom(8_192)
    addr = 0x90000 if kind == "flasher" else FW
    rel = make_release(tmp_path / "store", [("blob", addr, data)])
    [res] = run(cloud, rel, [core.device_id])
    assert res.ok, res.to_json()
    assert res.regions[0].report.retries >= 1
    got = core.flash(addr, len(data)) if kind == "flasher" else core.internal(FW, len(data))
    assert got == data


@pytest.mark.parametrize("kind", ["stock", "flasher"])
def test_three_second_stall_sends_no_duplicate(kind: str, make_real_core: Callable[..., Any],
                                               make_release: Callable[..., Any], cloud: CloudServer,
                                               tmp_path: Path) -> None:
    """The 0.3.x device re-requests the in-flight chunk after 3 s; a resend would shift the image."""
    core = make_real_core(kind, "--stall-chunk", "4", properties={"save_begin": True})
    data = os.urandom(6 * 512)
    addr = 0x80000 if kind == "flasher" else FW
    rel = make_release(tmp_path / "store", [("blob", addr, data)])
    [res] = run(cloud, rel, [core.device_id])
    assert core.count(r"stall \d+") == 1
    assert res.ok, res.to_json()
    stored = core.count(r"chunk \d+ 512")
    assert stored == 6, f"device stored {stored} chunks for a 6-chunk transfer"
    got = core.flash(addr, len(data)) if kind == "flasher" else core.internal(FW, len(data))
    assert got == data


def test_device_killed_mid_file_resumes(make_real_core: Callable[..., Any], make_release: Callable[..., Any],
                                        cloud: CloudServer, tmp_path: Path) -> None:
    import threading

    # the device stops reading at chunk 100 (of 192), so the power cut lands mid-file whatever the load
    core = make_real_core("flasher", "--stall-chunk", "100", "--stall-ms", "30000", properties={"save_begin": True})
    data = os.urandom(96 * 1024)
    rel = make_release(tmp_path / "store", [("file", 0x100000, data)])
    wait_connected(cloud, core.device_id)
    out: list[DeployResult] = []
    t = threading.Thread(target=lambda: out.extend(run(cloud, rel, [core.device_id], timeout=30)))
    t.start()
    core.wait_line(r"stall 30000", timeout=30)  # about half way
    core.kill()  # power cut: the flash image keeps what was written
    core.args = []
    core.start()
    t.join(60)
    [res] = out
    assert res.ok, res.to_json()
    assert core.flash(0x100000, len(data)) == data
    begins = [ln for ln in core.lines() if ln.startswith("begin ")]
    assert len(begins) == 2 and begins[0].startswith("begin 0x100000 ")
    resumed_at = int(begins[1].split()[1], 16)
    assert 0x100000 < resumed_at < 0x100000 + len(data) and resumed_at % 4096 == 0, begins
    assert res.regions[0].report.bytes_sent < 1.6 * len(data)


def _stored_sector(cloud: CloudServer, device: str) -> int:
    """The last whole sector the server stored as acknowledged by `device`, in any deployment."""
    with open_store(cloud.store.root / "fleet.db") as db:
        return max((p[1] for r in db.rollouts() for p in db.progress(r.id, device).values()), default=0)


def test_device_os_killed_mid_firmware_resumes(make_real_core: Callable[..., Any], make_release: Callable[..., Any],
                                               cloud: CloudServer, tmp_path: Path) -> None:
    """Pipelined fast OTA: every chunk is already sent when the device stops reading at chunk 100
    (of 192) and loses power; after the restart only the unacknowledged sectors are sent again."""
    import threading

    core = make_real_core("deviceos", "--stall-chunk", "100", "--stall-ms", "30000")
    data = os.urandom(96 * 1024)
    rel = make_release(tmp_path / "store", [("firmware", FW, data)])
    wait_connected(cloud, core.device_id)
    out: list[DeployResult] = []
    t = threading.Thread(target=lambda: out.extend(run(cloud, rel, [core.device_id], timeout=30)))
    t.start()
    core.wait_line(r"stall 30000", timeout=30)
    # the kill must come after the server read the device's acknowledgements: a SIGKILLed socket
    # with unread chunks resets the connection, and Linux drops what the server had not read yet
    deadline = time.monotonic() + 20
    while _stored_sector(cloud, core.device_id) < 4096:
        assert time.monotonic() < deadline, "no acknowledged sector stored within 20 s"
        time.sleep(0.05)
    core.kill()
    core.args = []
    core.start()
    t.join(60)
    [res] = out
    assert res.ok and [r.status for r in res.regions] == ["booted"], res.to_json()
    assert core.internal(FW, len(data)) == data
    begins = [int(ln.split()[1], 16) for ln in core.lines() if ln.startswith("begin ")]
    assert len(begins) == 2 and 0 < begins[1] - begins[0] < len(data) and (begins[1] - begins[0]) % 4096 == 0, begins
