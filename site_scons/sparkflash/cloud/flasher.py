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
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sparkflash.boards import Board
from sparkflash.cloud import agent_commands
from sparkflash.deploy.base import ProgressFn, Unverifiable, WriteReport
from sparkflash.errors import DeviceGone, InputError, ProtocolError, VerifyError
from sparkflash.manifest.model import Region
from sparkflash.protocols import ota

if TYPE_CHECKING:
    from sparkflash.cloud.session import DeviceInfo, DeviceSession

__all__ = ["OtaOptions", "CloudFlasher", "write_region", "region_digest", "refusal", "device_info", "KEY_AREAS", "Sessions"]

SECTOR = 4096
T = TypeVar("T")


class Sessions(Protocol):
    """Where a transfer finds the device's live session (the server)."""

    loop: asyncio.AbstractEventLoop | None

    async def wait_session(self, device: str, timeout: float, *,
                           not_before: DeviceSession | None = None) -> DeviceSession: ...


@dataclass(frozen=True)
class OtaOptions:
    chunk_size: int = ota.MAX_CHUNK
    connect_s: float = 60.0  # wait this long for a device to (re)connect
    max_drops: int = 5  # per region
    allow_fast: bool = True
    skip_unchanged: bool = True  # with the agent: send only the sectors that differ


@dataclass(frozen=True)
class _Plan:
    destination: int
    base: int
    save_begin: bool
    resumable: bool
    fast: bool
    segment: int


# Sectors OTA must never erase: the server key and address (0x1000) and the device key
# (0x2000). Real firmware does not protect them (a region there replaces the server key
# and cuts the device off from its cloud), so the server refuses before sending.
KEY_AREAS = ("server_key", "server_address", "device_key")


def refusal(board: Board, region: Region, info: DeviceInfo) -> str | None:
    """Why this device cannot take this region over the air (and which transport can), or None."""
    where = f"region {region.name!r} at 0x{region.address:08x}+{region.size}"
    dev = f"device {info.device_id}"
    if region.memory == board.firmware_memory and region.address == board.firmware_address:
        if region.size > board.firmware_max_size:
            return f"{where}: {region.size} bytes exceed the {board.firmware_max_size}-byte application area"
        return None
    if region.memory != "external":
        return (f"{where}: OTA reaches only the application firmware (0x{board.firmware_address:08x}) and external "
                "flash; write it by DFU (--via dfu)")
    mem = board.memory("external")
    start = region.address - region.address % SECTOR
    end = -(-(region.address + region.size) // SECTOR) * SECTOR
    for a in mem.areas:
        if (a.protected or a.name in KEY_AREAS) and start < a.end and a.start < end:
            return (f"{where}: the device would erase sectors 0x{start:x}-0x{end - 1:x}, which hold the {a.name} area "
                    f"(0x{a.start:x}-0x{a.end - 1:x}); OTA never rewrites keys or the server address. Use DFU "
                    "(--via dfu --allow-protected) for that")
    if region.address % SECTOR:
        return (f"{where}: OTA erases whole 4 KB sectors from the start address, so a file must start on one; "
                "deploy it by serial (--via serial, which keeps the rest of a partly covered sector) or align it")
    if info.generation == "os":
        return (f"{where}: {dev} runs Device OS, which stores no file over the air (it erases the range and discards "
                "the data, and takes SaveBegin for a firmware update); deploy files by serial (--via serial) or DFU (--via dfu)")
    if not info.save_begin:
        return (f"{where}: {dev} runs stock 0.3.x firmware, which stores only firmware over the air (it ignores "
                "SaveBegin); register it with the save_begin property only if its firmware has the flasher_additions "
                "protocol library, or deploy files by serial (--via serial) or DFU (--via dfu)")
    return None


def _plan(board: Board, region: Region, s: DeviceSession, opts: OtaOptions) -> _Plan:
    info = s.info
    assert info is not None
    why = refusal(board, region, info)
    if why is not None:
        raise InputError(why)
    if region.memory == board.firmware_memory and region.address == board.firmware_address:
        return _Plan(ota.DEST_FIRMWARE, 0, False, info.generation == "os", info.fast and opts.allow_fast, 1 << 30)
    seg = ota.max_chunks(opts.chunk_size) * opts.chunk_size // SECTOR * SECTOR
    return _Plan(ota.DEST_EXTERNAL, region.address, True, True, False, seg)


async def _changed_pieces(s: DeviceSession, region: Region, data: bytes, plan: _Plan) -> list[tuple[int, int]]:
    """The parts of `data` that differ from the device (agent digests), as (start, end) offsets.

    Firmware is all or nothing (the bootloader copies the whole slot, and a reboot costs the
    application its state): unchanged only if the whole region's digest matches. Files are
    compared per 4 KiB sector; runs of changed sectors become transfers of their own."""
    crc, sha = await s.agent_digest(region.address, region.size)
    if (crc, sha) == (region.crc32, region.sha256):
        return []
    if plan.destination == ota.DEST_FIRMWARE:
        return [(0, len(data))]
    theirs = await s.agent_sector_crcs(region.address, region.size)
    ours = [ota.crc32(data[i : i + SECTOR]) for i in range(0, len(data), SECTOR)]
    changed = [k for k, c in enumerate(ours) if k >= len(theirs) or theirs[k] != c]
    runs: list[tuple[int, int]] = []
    for k in changed:
        a, b = k * SECTOR, min((k + 1) * SECTOR, len(data))
        if runs and runs[-1][1] == a and b - runs[-1][0] <= plan.segment:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return runs


async def device_info(server: Sessions, device: str, opts: OtaOptions = OtaOptions()) -> DeviceInfo:
    """What the connected device is, after Describe (waits for it to connect)."""
    s = await server.wait_session(device, opts.connect_s)
    await s.describe()
    assert s.info is not None
    return s.info


async def write_region(server: Sessions, board: Board, device: str, region: Region, data: bytes,
                       progress: ProgressFn, opts: OtaOptions = OtaOptions(), *, resume: int = 0) -> WriteReport:
    """`resume`: a sector-aligned offset an earlier attempt had confirmed up to (where the plan allows it)."""
    s = await server.wait_session(device, opts.connect_s)
    plan = _plan(board, region, s, opts)
    cs, report, drops = opts.chunk_size, WriteReport(), 0
    booted: DeviceSession | None = None  # firmware: the session whose Hello said "OTA flashed"
    pieces = [(a, min(a + plan.segment, len(data))) for a in range(0, len(data), plan.segment)]
    if opts.skip_unchanged:
        await s.describe()
        assert s.info is not None
        if s.info.agent:
            pieces = await _changed_pieces(s, region, data, plan)
            report.sectors_skipped = len(region.erase) - sum(-(-(b - a) // SECTOR) for a, b in pieces) \
                if plan.destination != ota.DEST_FIRMWARE else (0 if pieces else len(region.erase))
            if not pieces:
                progress(len(data), len(data))
                return report  # the device already holds it: no write, no reboot
    if resume > 0 and plan.resumable and resume % SECTOR == 0:
        pieces = [(max(a, resume), b) for a, b in pieces if b > resume]
        report.sectors_skipped = resume // SECTOR
    for seg_start, seg_end in pieces:
        seg, off = data[seg_start:seg_end], 0
        while True:
            base = plan.base + seg_start + off
            sender = ota.OtaSender(seg[off:], s.ids, cs, plan.destination, base, plan.save_begin, plan.fast,
                                   pipeline=plan.fast)
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
                if off >= len(seg):  # nothing left but the end: redo the last sector and UpdateDone
                    off = (len(seg) - 1) // SECTOR * SECTOR
                if drops > opts.max_drops:
                    raise DeviceGone(f"device {device}, region {region.name!r}: connection lost {drops} times") from None
                s = await server.wait_session(device, opts.connect_s, not_before=s)
                assert s.info is not None
                if plan.destination == ota.DEST_FIRMWARE and s.info.ota_flashed:
                    # Installed after our UpdateBegin (which clears the flag): the device finished, and
                    # only a complete transfer is finished (0.3.x: we send UpdateDone only then; Device OS
                    # checks its bitmap). The reset came before the last answers reached us.
                    booted = s
                    progress(len(data), len(data))
                    break
                continue
            finally:
                report.bytes_sent += (sender.acked + sender.retries) * cs
            report.retries += sender.retries
            if sender.state == "failed":
                raise ProtocolError(f"device {device}, region {region.name!r} at 0x{base:08x}: {sender.error}")
            break
    report.sectors_erased = len(region.erase) - report.sectors_skipped
    if plan.destination == ota.DEST_FIRMWARE:
        s = booted or await server.wait_session(device, opts.connect_s, not_before=s)
        assert s.info is not None
        if not s.info.ota_flashed:
            raise VerifyError(f"device {device} reconnected without the 'OTA flashed' Hello flag: firmware not installed")
    return report


async def region_digest(server: Sessions, board: Board, device: str, region: Region,
                        opts: OtaOptions = OtaOptions()) -> tuple[int, str]:
    """The agent's digest of the region; Unverifiable when the device has no agent."""
    for attempt in range(3):
        s = await server.wait_session(device, opts.connect_s)
        try:
            await s.describe()
            assert s.info is not None
            if not s.info.agent:
                fw = region.memory == board.firmware_memory and region.address == board.firmware_address
                raise Unverifiable("booted" if fw else "acknowledged")
            return await s.agent_digest(region.address, region.size)
        except DeviceGone:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def agent_release_record(server: Sessions, device: str, opts: OtaOptions,
                        new: tuple[str, str, str] | None = None) -> tuple[str, str, str] | None:
    """Read the agent's release record, or write `new` (and read it back); nothing without an agent."""
    s = await server.wait_session(device, opts.connect_s)
    await s.describe()
    assert s.info is not None
    if not s.info.agent:
        return None
    if new is not None:
        await agent_commands.write_release_record(s, *new)
        return new
    return await agent_commands.read_release_record(s)


class CloudFlasher:
    """The shared deploy loop's view of one device on our cloud (called from a worker thread)."""

    via = "ota"

    def __init__(self, server: Sessions, board: Board, device: str, opts: OtaOptions = OtaOptions()) -> None:
        self.server, self.board, self.device, self.opts = server, board, device, opts

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.server.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.server.loop).result()

    def device_id(self) -> str:
        return self.device

    def write_region(self, region: Region, data: bytes, progress: ProgressFn) -> WriteReport:
        return self._call(write_region(self.server, self.board, self.device, region, data, progress, self.opts))

    def device_digest(self, region: Region) -> tuple[int, str]:
        return self._call(region_digest(self.server, self.board, self.device, region, self.opts))

    def preflight(self, regions: list[Region]) -> dict[str, str]:
        """Region name -> why it is refused for this device, decided before any byte is sent."""
        info = self._call(device_info(self.server, self.device, self.opts))
        return {r.name: why for r in regions if (why := refusal(self.board, r, info)) is not None}

    def release_record(self) -> tuple[str, str, str] | None:
        """The device agent's release record (REC over its cloud function); None without an agent."""
        return self._call(agent_release_record(self.server, self.device, self.opts))

    def set_release_record(self, name: str, version: str, sha256: str) -> None:
        """After a verified signed deploy (every region checked by the agent's digest): REC SET."""
        self._call(agent_release_record(self.server, self.device, self.opts, (name, version, sha256)))

    def finish(self) -> None:
        pass
