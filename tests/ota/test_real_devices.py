"""Acceptance against the REAL device protocol code built for the host (tests/peers/ota_harness).

stock = core-communication-lib master (0.3.x), flasher = its feature/flasher_additions
branch (SaveBegin), deviceos = Device OS v0.4.9 communication/. Every check reads the
device's own flash image, not our bookkeeping.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from sparkflash.cloud import CloudServer
from sparkflash.deploy.base import DeployResult
from sparkflash.deploy.ota import deploy
from sparkflash.deploy.run import Ledger

FW = 0x08005000


def admin_url(cloud: CloudServer) -> str:
    assert cloud.admin_addr is not None
    return "http://%s:%d" % tuple(cloud.admin_addr)


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
