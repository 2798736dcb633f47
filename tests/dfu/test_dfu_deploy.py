"""`deploy --via dfu` against the virtual Core's DfuSe bootloader: verified, skip-unchanged, refusals."""

from __future__ import annotations

import argparse
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from sparkflash.boards import load_board
from sparkflash.cli import main
from sparkflash.cli.deploy_cmd import adhoc_release
from sparkflash.deploy.dfu import DfuFlasher, SessionBackend, deploy
from sparkflash.deploy.dfu_session import DfuSession, open_pipes
from sparkflash.errors import InputError
from sparkflash.manifest.model import Manifest, Region
from sparkflash.manifest.release import Release, digests, open_release, store_blob
from sparkflash.virtual.core import CoreOptions, VirtualCore
from sparkflash.virtual.faults import Faults

VECTORS = struct.pack("<II", 0x20005000, 0x08005131)  # initial SP in RAM, Thumb reset handler in the app


def dfu_args(core: VirtualCore, **kw: object) -> argparse.Namespace:
    base = {"device": [f"virtual:{core.state.path}"], "backend": "pyusb", "no_skip": False, "leave": False,
            "timeout": None, "allow_downgrade": False}
    return argparse.Namespace(**{**base, **kw})


def flash_file(core: VirtualCore, tmp_path: Path, data: bytes, address: int, **kw: object) -> dict:
    f = tmp_path / f"blob-{address:x}.bin"
    f.write_bytes(data)
    rel = adhoc_release(f, address, "spark-core", False, tmp_path / "store")
    (res,) = deploy(dfu_args(core, **kw), rel, list(rel.manifest.regions), lambda e: None, None)
    assert res.ok, res.to_json()
    return res.regions[0].to_json()


def test_example_release_flashed_verified_then_unchanged(dfu_core: VirtualCore, example_release: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["deploy", str(example_release), "--via", "dfu", "--device", f"virtual:{dfu_core.state.path}",
            "--no-verify-signature", "--json"]
    assert main(argv) == 0
    rel = open_release(example_release, None, require_signature=False)
    flash = {"internal": dfu_core.state.internal, "external": dfu_core.state.external}
    for r in rel.manifest.regions:
        assert flash[r.memory].read(r.address, r.size) == rel.blob(r), r.name
    first = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert first["ok"] and [g["status"] for g in first["deployments"][0]["regions"]] == ["verified"] * 3

    erased = dfu_core.state.internal.erase_count + dfu_core.state.external.erase_count
    programmed = dfu_core.state.internal.program_count + dfu_core.state.external.program_count
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out.splitlines()[-1])
    regions = second["deployments"][0]["regions"]
    assert [g["status"] for g in regions] == ["unchanged"] * 3
    assert sum(g["sectors_erased"] for g in regions) == 0 and sum(g["bytes_sent"] for g in regions) == 0
    assert dfu_core.state.internal.erase_count + dfu_core.state.external.erase_count == erased
    assert dfu_core.state.internal.program_count + dfu_core.state.external.program_count == programmed


def test_one_byte_change_in_1_5_mib_rewrites_one_sector(dfu_core: VirtualCore, tmp_path: Path) -> None:
    data = bytearray(os.urandom(0x180000))
    first = flash_file(dfu_core, tmp_path, bytes(data), 0x80000)
    assert first["sectors_erased"] == 0 and first["sectors_skipped"] == 0  # a fresh SPI flash is blank
    data[0x123456] ^= 0x01
    second = flash_file(dfu_core, tmp_path, bytes(data), 0x80000)
    assert (second["sectors_erased"], second["sectors_skipped"], second["bytes_sent"]) == (1, 383, 4096)
    assert dfu_core.state.external.read(0x80000, len(data)) == data


def test_partial_sectors_keep_their_neighbours(dfu_core: VirtualCore, tmp_path: Path) -> None:
    ext = dfu_core.state.external
    ext.write_erased(0x90000, b"N" * 0x2000)  # someone else's bytes around the region
    r = flash_file(dfu_core, tmp_path, b"\x80" * 100, 0x90FC0)  # straddles two sectors (not text: #15)
    assert r["sectors_erased"] == 2
    assert ext.read(0x90000, 0x2000) == b"N" * 0xFC0 + b"\x80" * 100 + b"N" * (0x2000 - 0xFC0 - 100)


def test_no_skip_rewrites_everything(dfu_core: VirtualCore, tmp_path: Path) -> None:
    data = VECTORS + os.urandom(5000 - len(VECTORS))  # the application address needs a vector table (#15)
    flash_file(dfu_core, tmp_path, data, 0x08005000)
    again = flash_file(dfu_core, tmp_path, data, 0x08005000, no_skip=True)
    assert (again["sectors_erased"], again["sectors_skipped"], again["status"]) == (5, 0, "verified")


def _bootloader_release(tmp_path: Path, allow: bool) -> Release:
    data = b"\0" * 1024
    sha, crc = digests(data)
    store_blob(tmp_path, data)
    r = Region("boot", "internal", 0x08000000, 1024, sha, crc, (0x08000000,), "data", allow)
    m = Manifest("evil", "1.0.0", "spark-core", (r,))
    return Release(m, m.canonical(), None, tmp_path)


def test_protected_bootloader_refused_before_any_transfer(dfu_core: VirtualCore, tmp_path: Path) -> None:
    rel = _bootloader_release(tmp_path, allow=False)
    before = dfu_core.state.internal.read(0x08000000, 0x5000)
    with pytest.raises(InputError, match=r"'boot'.*0x08000000.*protected area 'bootloader'.*before any transfer"):
        deploy(dfu_args(dfu_core), rel, list(rel.manifest.regions), lambda e: None, None)
    assert dfu_core.endpoints["dfu"].device.commands == []  # nothing reached the device
    assert dfu_core.state.internal.read(0x08000000, 0x5000) == before


def test_protected_write_forced_is_never_marked_done(dfu_core: VirtualCore, tmp_path: Path) -> None:
    """allow_protected gets past our checks, the Core silently ignores the write: read-back fails it."""
    rel = _bootloader_release(tmp_path, allow=True)
    (res,) = deploy(dfu_args(dfu_core), rel, list(rel.manifest.regions), lambda e: None, None)
    (r,) = res.regions
    assert not res.ok and r.status == "failed"
    assert "read-back differs at 0x08000000" in (r.error or "") and "after a retry" in (r.error or "")


def test_leave_resets_the_core(dfu_core: VirtualCore, tmp_path: Path) -> None:
    flash_file(dfu_core, tmp_path, VECTORS + os.urandom(2040), 0x08005000, leave=True)
    ep = dfu_core.endpoints["dfu"]
    assert ep.reset_done.wait(5) and ep.resets == 1


def test_reset_mid_write_is_not_marked_done_and_a_rerun_recovers(core_dir: Path, tmp_path: Path) -> None:
    opts = CoreOptions(dfu_poll=False, endpoints=("dfu",), faults=Faults.parse(["reset@3"]))
    with VirtualCore(core_dir, opts) as core:
        f = tmp_path / "d.bin"
        data = os.urandom(8192)
        f.write_bytes(data)
        rel = adhoc_release(f, 0xA0000, "spark-core", False, tmp_path / "store")
        (bad,) = deploy(dfu_args(core), rel, list(rel.manifest.regions), lambda e: None, None)
        assert not bad.ok and bad.regions[0].status == "failed" and "went away" in (bad.regions[0].error or "")
        (res,) = deploy(dfu_args(core), rel, list(rel.manifest.regions), lambda e: None, None)
        assert res.ok and core.state.external.read(0xA0000, 8192) == data


def test_no_virtual_core_is_a_clear_device_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"x" * 10)
    code = main(["flash", str(f), "--address", "0x80000", "--via", "dfu", "--device", f"virtual:{tmp_path}/none"])
    assert code == 4
    assert "sparkflash virtual-core --state" in capsys.readouterr().err


def test_poll_timeouts_are_honoured(core_dir: Path, tmp_path: Path) -> None:
    """With the Core's timeouts on, the host waits exactly what the Core announced (no sleeping in tests
    beyond that: one SPI sector = erase 20 ms + Set Address 30 ms + 4 blocks x 30 ms)."""
    with VirtualCore(core_dir, CoreOptions(dfu_poll=True, endpoints=("dfu",))) as core:
        core.state.external.write_erased(0xB0000, b"old" * 100)
        (pipe,) = open_pipes([f"virtual:{core.state.path}"], 0x1D50, 0x607F)
        session = DfuSession(pipe)
        f = tmp_path / "d.bin"
        f.write_bytes(os.urandom(4096))
        rel = adhoc_release(f, 0xB0000, "spark-core", False, tmp_path / "store")
        (region,) = rel.manifest.regions
        try:
            DfuFlasher(SessionBackend(session), load_board("spark-core")).write_region(region, rel.blob(region),
                                                                                       lambda d, t: None)
        finally:
            session.close()
        assert session.counts["erase"] == 1 and session.counts["dnload"] == 4
        # one Set Address, for the read before: the run's erase of its first sector left the pointer
        # there (the Core's Erase moves it), and the read-back after reuses it
        assert session.counts["set_address"] == 1
        assert session.waited_s == pytest.approx(0.020 + 4 * 0.030 + 1 * 0.030)


def _write_verified(core: VirtualCore, data: bytes, address: int, tmp_path: Path) -> tuple[Any, Any]:
    """(report, session): one region of `data` at `address` written by DfuFlasher over the Core's
    DFU endpoint, its digest read back from the device and checked."""
    f = tmp_path / "d.bin"
    f.write_bytes(data)
    rel = adhoc_release(f, address, "spark-core", False, tmp_path / "store")
    (region,) = rel.manifest.regions
    (pipe,) = open_pipes([f"virtual:{core.state.path}"], 0x1D50, 0x607F)
    session = DfuSession(pipe)
    try:
        fl = DfuFlasher(SessionBackend(session), load_board("spark-core"))
        rep = fl.write_region(region, rel.blob(region), lambda d, t: None)
        assert fl.device_digest(region) == (region.crc32, region.sha256)
    finally:
        session.close()
    return rep, session


def test_a_run_whose_first_sector_needs_no_erase_sets_the_pointer(core_dir: Path, tmp_path: Path) -> None:
    """Erases go highest first so the last one (the run's first sector) leaves the pointer at the
    run; when that sector is already blank nothing moved the pointer there, so it is set."""
    with VirtualCore(core_dir, CoreOptions(dfu_poll=False, endpoints=("dfu",))) as core:
        ext = core.state.external
        ext.write_erased(0xC0000, b"\x11" * 0x3000)  # three sectors of old bytes
        ext.erase_sector(0xC0000)  # ... the first one blank again
        data = os.urandom(0x3000)
        rep, session = _write_verified(core, data, 0xC0000, tmp_path)
        assert (rep.sectors_erased, rep.retries) == (2, 0)
        assert session.counts["set_address"] == 2  # the read before, and the run's (its first sector was blank)
        assert ext.read(0xC0000, 0x3000) == data
        erases = [a for kind, a in core.endpoints["dfu"].device.commands if kind == "erase"]
        assert erases == [0xC2000, 0xC1000]  # highest first


def test_read_before_writing_stops_in_a_sector_at_its_first_differing_chunk(core_dir: Path, tmp_path: Path) -> None:
    """A sector inside the region is rewritten as soon as one chunk differs (and is not blank), so
    the read before writing skips its other chunks; unchanged and blank sectors are read in full
    (skipped, or written without an Erase), and every rewritten byte is still read back."""
    with VirtualCore(core_dir, CoreOptions(dfu_poll=False, endpoints=("dfu",))) as core:
        ext = core.state.external
        data = bytearray(os.urandom(0x4000))  # four 4 KiB sectors, 1 KiB chunks
        old = bytearray(data)
        old[0x1000:0x2000] = os.urandom(0x1000)  # sector 1 differs in its first chunk
        old[0x2C00:0x3000] = os.urandom(0x400)  # sector 2 only in its last chunk
        ext.write_erased(0xD0000, bytes(old))  # sector 0 unchanged
        ext.erase_sector(0xD3000)  # sector 3 blank: written without an Erase
        rep, session = _write_verified(core, bytes(data), 0xD0000, tmp_path)
        assert (rep.sectors_skipped, rep.sectors_erased, rep.retries) == (1, 2, 0)
        assert session.counts["upload"] == (4 + 1 + 4 + 4) + 3 * 4  # the read before, then sectors 1-3 read back
        assert ext.read(0xD0000, 0x4000) == data
        erases = [a for kind, a in core.endpoints["dfu"].device.commands if kind == "erase"]
        assert erases == [0xD2000, 0xD1000]


def test_two_devices_in_one_deploy(tmp_path: Path) -> None:
    opts = CoreOptions(dfu_poll=False, endpoints=("dfu",))
    with VirtualCore(tmp_path / "a", opts) as a, VirtualCore(tmp_path / "b", opts) as b:
        f = tmp_path / "d.bin"
        f.write_bytes(os.urandom(3000))
        rel = adhoc_release(f, 0xC0000, "spark-core", False, tmp_path / "store")
        args = dfu_args(a, device=[f"virtual:{a.state.path}", f"virtual:{b.state.path}"])
        results = deploy(args, rel, list(rel.manifest.regions), lambda e: None, None)
        assert [r.device for r in results] == [a.state.info["device_id"], b.state.info["device_id"]]
        assert all(r.ok for r in results)
        assert a.state.external.read(0xC0000, 3000) == b.state.external.read(0xC0000, 3000) == f.read_bytes()
