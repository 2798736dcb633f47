"""Writing and verifying one region on one device over the cloud, resuming after drops.

Firmware goes to the OTA slot (destination 0); the device then resets, the bootloader
installs it, and the reconnect's Hello flag confirms the boot. Files go to their external
address (destination 1, or SaveBegin on 0.3.x-based firmware), split into transfers whose
received-chunk bitmap still fits the Core's 640-byte buffer. After a drop we resume at the
4 KB sector holding the first unacknowledged chunk: a device erases whole sectors when a
transfer begins, so that is the nearest point that leaves confirmed bytes intact.
`CloudFlasher` is the synchronous `Flasher` the shared deploy loop drives from a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sparkflash.boards import Board
from sparkflash.deploy.base import ProgressFn, WriteReport
from sparkflash.errors import DeviceError, DeviceGone, InputError, ProtocolError, VerifyError
from sparkflash.manifest.model import Region
from sparkflash.protocols import ota

if TYPE_CHECKING:
    from sparkflash.cloud.server import CloudServer
    from sparkflash.cloud.session import DeviceSession

__all__ = ["OtaOptions", "CloudFlasher", "write_region", "region_digest"]

SECTOR = 4096
T = TypeVar("T")


@dataclass(frozen=True)
class OtaOptions:
    chunk_size: int = ota.MAX_CHUNK
    connect_s: float = 60.0  # wait this long for a device to (re)connect
    max_drops: int = 5  # per region
    allow_fast: bool = True


@dataclass(frozen=True)
class _Plan:
    destination: int
    base: int
    save_begin: bool
    resumable: bool
    fast: bool
    segment: int


def _plan(board: Board, region: Region, s: DeviceSession, opts: OtaOptions) -> _Plan:
    info = s.info
    assert info is not None
    where = f"region {region.name!r} at 0x{region.address:08x}"
    seg = ota.max_chunks(opts.chunk_size) * opts.chunk_size // SECTOR * SECTOR
    if region.memory == board.firmware_memory and region.address == board.firmware_address:
        if region.size > board.firmware_max_size:
            raise InputError(f"{where}: {region.size} bytes exceed the {board.firmware_max_size}-byte application area")
        return _Plan(ota.DEST_FIRMWARE, 0, False, info.generation == "os", info.fast and opts.allow_fast, 1 << 30)
    if region.memory != "external":
        raise InputError(f"{where}: only the application firmware and external-flash files can be written over the air")
    if region.address % SECTOR:
        raise InputError(f"{where}: OTA erases whole 4 KB sectors, so a file must start on one (0x{region.address:08x} does not)")
    if not info.ours:
        raise DeviceError(f"device {info.device_id} (product 0x{info.product_id:04x}) runs firmware that cannot store "
                          f"files over the air; {where} needs sparkflash device firmware (docs/ota.md)")
    save = info.generation == "ccl"  # 0.3.x-based firmware knows only SaveBegin for files
    return _Plan(ota.DEST_EXTERNAL, region.address, save, True, info.fast and opts.allow_fast and not save, seg)


async def write_region(server: CloudServer, board: Board, device: str, region: Region, data: bytes,
                       progress: ProgressFn, opts: OtaOptions = OtaOptions()) -> WriteReport:
    s = await server.wait_session(device, opts.connect_s)
    plan = _plan(board, region, s, opts)
    cs, report, drops = opts.chunk_size, WriteReport(), 0
    for seg_start in range(0, len(data), plan.segment):
        seg, off = data[seg_start : seg_start + plan.segment], 0
        while True:
            base = plan.base + seg_start + off
            sender = ota.OtaSender(seg[off:], s.ids, cs, plan.destination, base, plan.save_begin, plan.fast)
            first = seg_start + off

            def prog(acked: int, _first: int = first) -> None:
                progress(min(len(data), _first + acked * cs), len(data))

            try:
                await s.transfer(sender, prog)
            except DeviceGone:
                drops += 1
                report.retries += 1
                confirmed = off + sender.acked * cs
                off = confirmed // SECTOR * SECTOR if plan.resumable else 0
                if drops > opts.max_drops:
                    raise DeviceGone(f"device {device}, region {region.name!r}: connection lost {drops} times") from None
                s = await server.wait_session(device, opts.connect_s, not_before=s)
                continue
            finally:
                report.bytes_sent += (sender.acked + sender.retries) * cs
            report.retries += sender.retries
            if sender.state == "failed":
                raise ProtocolError(f"device {device}, region {region.name!r} at 0x{base:08x}: {sender.error}")
            break
    report.sectors_erased = len(region.erase)
    if plan.destination == ota.DEST_FIRMWARE:
        s = await server.wait_session(device, opts.connect_s, not_before=s)
        assert s.info is not None
        if not s.info.ota_flashed:
            raise VerifyError(f"device {device} reconnected without the 'OTA flashed' Hello flag: firmware not installed")
    return report


async def region_digest(server: CloudServer, device: str, region: Region, opts: OtaOptions = OtaOptions()) -> tuple[int, str]:
    for attempt in range(3):
        s = await server.wait_session(device, opts.connect_s)
        assert s.info is not None
        if not s.info.ours:
            raise VerifyError(f"device {device}: its firmware has no checksum request; region {region.name!r} "
                              f"at 0x{region.address:08x} cannot be verified over the air")
        try:
            return await s.checksum(region.address, region.size)
        except DeviceGone:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class CloudFlasher:
    """The shared deploy loop's view of one device on our cloud (called from a worker thread)."""

    via = "ota"

    def __init__(self, server: CloudServer, board: Board, device: str, opts: OtaOptions = OtaOptions()) -> None:
        self.server, self.board, self.device, self.opts = server, board, device, opts

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.server.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.server.loop).result()

    def device_id(self) -> str:
        return self.device

    def write_region(self, region: Region, data: bytes, progress: ProgressFn) -> WriteReport:
        return self._call(write_region(self.server, self.board, self.device, region, data, progress, self.opts))

    def device_digest(self, region: Region) -> tuple[int, str]:
        return self._call(region_digest(self.server, self.device, region, self.opts))

    def finish(self) -> None:
        pass
