"""tools/bench dfu: DfuSe write speed on the virtual Core with the Core's real poll timeouts.

Measured side by side in one run, on the same virtual Core (dfu_poll on, so every
command/data block costs the bwPollTimeout the Core announces: 50 ms internal, SPI
20 ms erase / 30 ms else):

1. ours (pointer set once per run, wBlockNum 2,3,4..., read back and verified) versus
   dfu-util's pattern re-implemented on the same host machine (erase every page, then
   Set Address + DNLOAD wBlockNum 2 per chunk, no verify), writing the same bytes over
   different old contents, for SPI and for internal flash;
2. a one-byte change in a 1.5 MiB region (read back, one sector rewritten, verified)
   versus a full write of that region (--no-skip), each followed by the digest read-back.

Options: --spi-kib N (default 256), --internal-kib N (16), --big-kib N (1536), --quick
(128/8/256, for a smoke run).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from sparkflash.boards import load_board
from sparkflash.deploy.dfu import DfuFlasher, SessionBackend
from sparkflash.deploy.dfu_session import DfuSession, open_pipes
from sparkflash.manifest.model import Region
from sparkflash.virtual.core import CoreOptions, VirtualCore


def _region(name: str, memory: str, address: int, data: bytes) -> Region:
    return Region(name, memory, address, len(data), hashlib.sha256(data).hexdigest(), zlib.crc32(data), ())


def _dfu_util_pattern(session: DfuSession, address: int, data: bytes, page: int) -> None:
    """dfu-util 0.11 dfuse_dnload_element: erase pass over every page, then per chunk
    Set Address + DNLOAD(wBlockNum 2) + GETSTATUS loop; ABORT at the end."""
    h = session.host
    for a in range(address - address % page, address + len(data), page):
        session.run(h.erase(a))
    for off in range(0, len(data), h.transfer_size):
        session.run(h.set_address(address + off))
        session.run(h.download(2, data[off : off + h.transfer_size], address + off))
    session.run(h.abort())


def _side_by_side(core: VirtualCore, session: DfuSession, memory: str, address: int, kib: int) -> dict[str, Any]:
    board = load_board("spark-core")
    mem = board.memory(memory)
    flash = core.state.internal if memory == "internal" else core.state.external
    data = os.urandom(kib * 1024)
    session.select_alt(mem.dfu_alt)
    out: dict[str, Any] = {"bytes": len(data)}
    for name in ("dfu_util_pattern", "ours"):
        flash.write_erased(address, os.urandom(len(data)))  # different old contents: every sector must change
        t0, w0 = time.monotonic(), session.waited_s
        if name == "ours":
            r = DfuFlasher(SessionBackend(session), board).write_region(_region("b", memory, address, data), data,
                                                                        lambda d, t: None)
            assert r.sectors_erased == len(mem.sectors(address, len(data))), r
        else:
            _dfu_util_pattern(session, address, data, mem.sector_size)
        dt = time.monotonic() - t0
        if flash.read(address, len(data)) != data:
            raise RuntimeError(f"{name}: {memory} flash does not hold the written bytes")
        out[f"{name}_s"] = round(dt, 3)
        out[f"{name}_poll_wait_s"] = round(session.waited_s - w0, 3)
        out[f"{name}_kib_per_s"] = round(len(data) / 1024 / dt, 2)
    out["speedup"] = round(out["dfu_util_pattern_s"] / out["ours_s"], 3)
    return out


def _one_sector(core: VirtualCore, session: DfuSession, kib: int) -> dict[str, Any]:
    board = load_board("spark-core")
    data = bytearray(os.urandom(kib * 1024))
    address = 0x80000
    session.select_alt(board.memory("external").dfu_alt)
    core.state.external.write_erased(address, os.urandom(len(data)))

    def deploy_once(blob: bytes, no_skip: bool) -> tuple[float, Any]:
        region = _region("big", "external", address, blob)
        fl = DfuFlasher(SessionBackend(session), board, no_skip=no_skip)
        t0 = time.monotonic()
        rep = fl.write_region(region, blob, lambda d, t: None)
        crc, sha = fl.device_digest(region)
        dt = time.monotonic() - t0
        if (crc, sha) != (region.crc32, region.sha256):
            raise RuntimeError("read-back digest differs")
        return dt, rep

    full_s, full = deploy_once(bytes(data), no_skip=True)
    data[len(data) // 2 + 1234] ^= 0x5A
    one_s, one = deploy_once(bytes(data), no_skip=False)
    return {"bytes": len(data), "full_write_s": round(full_s, 3), "full_sectors_erased": full.sectors_erased,
            "one_byte_change_s": round(one_s, 3), "one_change_sectors_erased": one.sectors_erased,
            "one_change_sectors_skipped": one.sectors_skipped, "speedup": round(full_s / one_s, 2)}


def run(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="tools/bench dfu")
    p.add_argument("--spi-kib", type=int, default=256)
    p.add_argument("--internal-kib", type=int, default=16)
    p.add_argument("--big-kib", type=int, default=1536)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.spi_kib, a.internal_kib, a.big_kib = 128, 8, 256
    with tempfile.TemporaryDirectory(prefix="bench-dfu-") as tmp:
        core = VirtualCore(Path(tmp) / "core", CoreOptions(dfu_poll=True, endpoints=("dfu",))).start()
        try:
            (pipe,) = open_pipes([f"virtual:{core.state.path}"], *core.state.board.usb["dfu"])
            session = DfuSession(pipe)
            try:
                spi = _side_by_side(core, session, "external", 0x100000, a.spi_kib)
                internal = _side_by_side(core, session, "internal", 0x08005000, a.internal_kib)
                big = _one_sector(core, session, a.big_kib)
            finally:
                session.close()
        finally:
            core.stop()
    return {
        "poll_timeouts": "Core: internal 50 ms; SPI 20 ms erase, 30 ms otherwise (dfu_poll on)",
        "write_spi": spi,
        "write_internal": internal,
        "one_sector_change": big,
        "targets": {"write_speedup_spi>=1.8": spi["speedup"] >= 1.8, "one_sector_speedup>=20": big["speedup"] >= 20},
    }
