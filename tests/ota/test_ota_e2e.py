"""End to end over loopback TCP: admin API -> cloud server -> virtual cores' cloud clients.

Every check reads the cores' flash images, not our bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cloud import CloudServer
from sparkflash.deploy.base import DeployResult
from sparkflash.deploy.ota import AdminClient, deploy
from sparkflash.deploy.run import Ledger
from sparkflash.virtual.core import VirtualCore
from sparkflash.virtual.faults import Faults

FW = 0x08005000


def admin_url(cloud: CloudServer) -> str:
    assert cloud.admin_addr is not None
    host, port = cloud.admin_addr
    return f"http://{host}:{port}"


def run_deploy(cloud: CloudServer, release: Any, cores: list[VirtualCore], events: list[dict[str, Any]] | None = None,
               timeout: float = 20.0) -> list[DeployResult]:
    for c in cores:
        assert c.endpoints["cloud"].connected.wait(20), "core did not connect"  # type: ignore[attr-defined]
    args = argparse.Namespace(device=[c.state.info["device_id"] for c in cores], cloud=admin_url(cloud),
                              timeout=timeout, allow_downgrade=False)
    sink = events if events is not None else []
    return deploy(args, release, list(release.manifest.regions), sink.append, Ledger())


def test_multi_region_release_deployed_and_verified(make_release: Callable[..., Any], make_core: Callable[..., VirtualCore],
        cloud: CloudServer, tmp_path: Path) -> None:
    core = make_core(cloud_dialect="ccl", cloud_save_begin=True)  # files need flasher_additions + the agent
    fw, font, web = os.urandom(30_000), os.urandom(0x10000), os.urandom(9_000)
    rel = make_release(tmp_path / "store", [("firmware", FW, fw), ("font", 0x80000, font), ("web", 0x100000, web)])
    events: list[dict[str, Any]] = []
    [res] = run_deploy(cloud, rel, [core], events)
    assert res.ok, res.to_json()
    assert [r.status for r in res.regions] == ["verified"] * 3
    assert core.state.internal.read(FW, len(fw)) == fw
    assert core.state.external.read(0x80000, len(font)) == font
    assert core.state.external.read(0x100000, len(web)) == web
    assert core.state.info["flags"]["ota_pending"] is False  # the bootloader installed it
    kinds = [e["event"] for e in events]
    assert kinds[0] == "deploy-start" and kinds[-1] == "deploy-done" and "progress" in kinds
    assert all(e["device"] == core.state.info["device_id"] for e in events)
    assert Ledger().last(res.device, "ota-test") == "1.0.0"


def test_file_at_0x100000_and_firmware_stop_and_wait_save_begin(make_release: Callable[..., Any],
        make_core: Callable[..., VirtualCore],
        cloud: CloudServer,
                                                                tmp_path: Path) -> None:
    """A 0.3.x-based core: 52-byte handshake, stop-and-wait only, files through SaveBegin."""
    core = make_core(cloud_dialect="ccl", cloud_save_begin=True)
    fw, f = os.urandom(12_345), os.urandom(20_000)
    rel = make_release(tmp_path / "store", [("file", 0x100000, f), ("firmware", FW, fw)])
    [res] = run_deploy(cloud, rel, [core])
    assert res.ok, res.to_json()
    assert core.state.external.read(0x100000, len(f)) == f
    assert core.state.internal.read(FW, len(fw)) == fw
    session = cloud.sessions[res.device]
    assert session.info is not None and session.info.generation == "ccl"


def test_unknown_device_is_refused_and_logged(make_release: Callable[..., Any], make_core: Callable[..., VirtualCore],
        cloud: CloudServer, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    core = make_core(register=False)
    dev = core.state.info["device_id"]
    deadline = time.monotonic() + 10
    while not cloud.registry.refused and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cloud.registry.refused and cloud.registry.refused[0]["device"] == dev
    assert dev not in cloud.sessions and not core.endpoints["cloud"].connected.is_set()  # type: ignore[attr-defined]
    assert (cloud.registry.root / "pending" / f"{dev}_handshake.pub.pem").read_bytes() == core.state.device_public_pem()
    listing = AdminClient(admin_url(cloud), cloud.token).call("GET", "/v1/devices")
    assert listing["refused"][0]["device"] == dev
    rel = make_release(tmp_path / "store", [("file", 0x80000, b"x" * 100)])
    args = argparse.Namespace(device=[dev], cloud=admin_url(cloud), timeout=1.0, allow_downgrade=False)
    [res] = deploy(args, rel, list(rel.manifest.regions), lambda e: None, Ledger())
    assert not res.ok and "did not connect" in (res.regions[0].error or "")
    assert core.state.external.read(0x80000, 100) == b"\xff" * 100


@pytest.mark.parametrize("dialect", ["os", "ccl"])
def test_corrupted_chunk_is_resent(make_release: Callable[..., Any], make_core: Callable[..., VirtualCore],
        cloud: CloudServer, tmp_path: Path, dialect: str) -> None:
    core = make_core(cloud_dialect=dialect, cloud_corrupt_chunk=5, cloud_save_begin=True)
    data = os.urandom(16_384)
    address = FW if dialect == "os" else 0x90000  # Device OS stores only firmware over the air
    rel = make_release(tmp_path / "store", [("blob", address, data)])
    [res] = run_deploy(cloud, rel, [core])
    assert res.ok, res.to_json()
    assert res.regions[0].report.retries >= 1
    memory = core.state.internal if address == FW else core.state.external
    assert memory.read(address, len(data)) == data


@pytest.mark.parametrize("address", [0x100000, FW])
def test_connection_dropped_at_half_resumes(make_release: Callable[..., Any], make_core: Callable[..., VirtualCore],
        cloud: CloudServer, tmp_path: Path,
                                            address: int) -> None:
    size = 64 * 1024
    extra = {"cloud_dialect": "ccl", "cloud_save_begin": True} if address != FW else {}
    core = make_core(faults=Faults(drop_after=424 + size // 2), **extra)  # handshake (40 + 384) + half the data
    data = os.urandom(size)
    rel = make_release(tmp_path / "store", [("blob", address, data)])
    [res] = run_deploy(cloud, rel, [core])
    assert res.ok, res.to_json()
    memory = core.state.internal if address == FW else core.state.external
    assert memory.read(address, size) == data
    rep = res.regions[0].report
    assert rep.retries >= 1 and core.endpoints["cloud"].connections >= 2  # type: ignore[attr-defined]
    assert rep.bytes_sent < 1.25 * size, "restarted from the beginning instead of resuming"


@pytest.mark.parametrize("dialect", ["os", "ccl"])
def test_stock_firmware_gets_no_file(make_release: Callable[..., Any], make_core: Callable[..., VirtualCore],
        cloud: CloudServer, tmp_path: Path, dialect: str) -> None:
    """A product id proves nothing: even one claiming 0x5346 gets no file without SaveBegin support."""
    core = make_core(cloud_agent=False, cloud_dialect=dialect, cloud_product_id=0x5346)
    rel = make_release(tmp_path / "store", [("file", 0x80000, os.urandom(1000))])
    [res] = run_deploy(cloud, rel, [core])
    err = res.regions[0].error or ""
    assert not res.ok and res.exit_code == 2 and ("stores no file" if dialect == "os" else "stores only firmware") in err
    assert core.state.external.read(0x80000, 16) == b"\xff" * 16


def _many(n: int, make_core: Callable[..., VirtualCore], cloud: CloudServer, tmp_path: Path,
          make_release: Callable[..., Any]) -> None:
    cores = [make_core(f"core{i}", cloud_dialect="ccl", cloud_save_begin=True) for i in range(n)]
    fw, f = os.urandom(8_000), os.urandom(6_000)
    rel = make_release(tmp_path / "store", [("firmware", FW, fw), ("file", 0x100000, f)])
    results = run_deploy(cloud, rel, cores, timeout=60.0)
    assert len(results) == n and all(r.ok for r in results), [r.to_json() for r in results if not r.ok]
    for c in cores:
        assert c.state.internal.read(FW, len(fw)) == fw and c.state.external.read(0x100000, len(f)) == f


def test_ten_cores_at_once(make_core: Callable[..., VirtualCore], cloud: CloudServer, tmp_path: Path,
                          make_release: Callable[..., Any]) -> None:
    _many(10, make_core, cloud, tmp_path, make_release)


@pytest.mark.slow
def test_hundred_cores_at_once(make_core: Callable[..., VirtualCore], cloud: CloudServer, tmp_path: Path,
                          make_release: Callable[..., Any]) -> None:
    _many(100, make_core, cloud, tmp_path, make_release)


def test_admin_api_errors(cloud: CloudServer) -> None:
    c = AdminClient(admin_url(cloud), cloud.token)
    from sparkflash.errors import InputError, TransportError

    with pytest.raises(InputError, match="devices"):
        c.call("POST", "/v1/deployments", {"manifest": "/nonexistent"})
    with pytest.raises(TransportError, match="404"):
        c.call("GET", "/v1/deployments/nope")
    assert json.dumps(c.call("GET", "/v1/devices"))


def test_link_corruption_inside_a_chunk_is_resent(make_release: Callable[..., Any], make_core: Callable[..., VirtualCore],
        cloud: CloudServer, tmp_path: Path) -> None:
    """A byte flipped on the wire in the middle of chunk 3's ciphertext: AES-CBC garbles that block,
    the CRC catches it, and fast OTA's missing list brings the chunk again."""
    # handshake 40+384, server Hello 18, Describe 18, GET /v/sfcaps 18, the release record (POST
    # /f/sfdigest?REC 34, GET /v/sfresult 34), UpdateBegin 34, then 546-byte
    # chunk frames; +2+165 = inside block 10
    core = make_core(faults=Faults(corrupt_at=424 + 18 + 18 + 18 + 34 + 34 + 34 + 3 * 546 + 2 + 165))
    data = os.urandom(8192)
    rel = make_release(tmp_path / "store", [("firmware", FW, data)])
    [res] = run_deploy(cloud, rel, [core])
    assert res.ok, res.to_json()
    assert res.regions[0].report.retries >= 1 and core.endpoints["cloud"].connections == 2  # type: ignore[attr-defined]
    assert core.state.internal.read(FW, len(data)) == data


def test_idle_device_pings_and_server_answers(make_core: Callable[..., VirtualCore], cloud: CloudServer) -> None:
    """Timers scaled 1/20: the core pings after 0.75 s idle and would close 0.5 s later without an answer."""
    core = make_core(cloud_time_scale=0.05)
    assert core.endpoints["cloud"].connected.wait(20)  # type: ignore[attr-defined]
    time.sleep(2.5)  # three ping rounds
    assert core.endpoints["cloud"].connections == 1  # type: ignore[attr-defined]
    assert core.state.info["device_id"] in cloud.sessions


def test_agent_digests_skip_unchanged_sectors(make_release: Callable[..., Any], make_core: Callable[..., VirtualCore],
                                              cloud: CloudServer, tmp_path: Path) -> None:
    """With the agent: a rerun sends nothing and does not reboot; a one-byte change sends one sector."""
    core = make_core(cloud_dialect="ccl", cloud_save_begin=True)
    fw, big = os.urandom(20_000), bytearray(os.urandom(128 * 1024))
    rel = make_release(tmp_path / "s1", [("firmware", FW, fw), ("big", 0x100000, bytes(big))])
    [res] = run_deploy(cloud, rel, [core])
    assert res.ok and [r.status for r in res.regions] == ["verified", "verified"], res.to_json()
    conns = core.endpoints["cloud"].connections  # type: ignore[attr-defined]
    [res] = run_deploy(cloud, rel, [core])
    assert [r.status for r in res.regions] == ["unchanged", "unchanged"], res.to_json()
    assert sum(r.report.bytes_sent for r in res.regions) == 0
    assert core.endpoints["cloud"].connections == conns  # type: ignore[attr-defined]  # no reboot
    big[70_000] ^= 0xFF
    rel2 = make_release(tmp_path / "s2", [("firmware", FW, fw), ("big", 0x100000, bytes(big))], version="1.0.1")
    [res] = run_deploy(cloud, rel2, [core])
    assert [r.status for r in res.regions] == ["unchanged", "verified"], res.to_json()
    rep = res.regions[1].report
    assert rep.bytes_sent == 4096 and rep.sectors_skipped == 31 and rep.sectors_erased == 1
    assert core.state.external.read(0x100000, len(big)) == bytes(big)
