"""`--via dfu`: every region through the Core's DfuSe bootloader, skip-unchanged, read-back verified.

Per region: select the memory's alt, refuse non-writable layout segments, read the touched
sectors (one inside the region only up to its first chunk that differs and is not blank: it
is rewritten anyway), then per contiguous run of changed sectors: erase those not already
blank (highest first: the Core's Erase moves the pointer, so erasing the run's first sector
last sets it for the data blocks), set the pointer only if that erase was not needed,
DNLOAD blocks 2, 3, 4... (blank chunks left out), read the run back (one retry).
`device_digest` is computed from those device reads (the pre-read of untouched sectors,
the read-back of rewritten runs), or reads the region: the Core itself never reports an
error. Backends: pyusb or the virtual core's socket (DfuSession), or the installed dfu-util.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import re
import tempfile
import zlib
from pathlib import Path
from typing import Any, Protocol

from sparkflash.boards import Board, Memory, load_board
from sparkflash.deploy.base import DeployResult, EventFn, ProgressFn, WriteReport
from sparkflash.deploy.dfu_plan import SectorPlan, chunks, plan_write
from sparkflash.deploy.dfu_session import DEFAULT_TIMEOUT, DfuSession, open_pipes
from sparkflash.deploy.parallel import Job, run_parallel
from sparkflash.deploy.run import Ledger, deploy_release
from sparkflash.errors import InputError, TransportError, VerifyError
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import Release
from sparkflash.protocols.dfu_layout import ERASABLE, WRITABLE, Layout, parse_layout
from sparkflash.protocols.dfuse import SkipFn
from sparkflash.transports.dfu_util import DfuUtil, list_args, upload_args
from sparkflash.transports.usb_device import DFU_MODE_HINT

__all__ = ["DfuBackend", "DfuFlasher", "DfuUtilBackend", "SessionBackend", "check_region", "deploy"]


class DfuBackend(Protocol):
    """The primitives the flasher needs; both backends erase, write and read the same way."""

    def device_id(self) -> str: ...

    def select(self, alt: int) -> Layout: ...

    def read(self, address: int, length: int, skip: SkipFn | None = None) -> bytes:
        """The bytes at address; `skip` (protocols.dfuse read) may leave chunks unread (0x00): a hint
        a backend that reads whole ranges ignores."""
        ...

    def write_run(self, start: int, data: bytes, erase: list[int], progress: ProgressFn) -> int: ...

    def read_back(self, start: int, length: int) -> bytes:
        """Read what the last write_run(start, ...) wrote."""
        ...

    def leave(self) -> None: ...

    def close(self) -> None: ...


class SessionBackend:
    """Our own DfuSe host over pyusb or the virtual core's socket."""

    def __init__(self, session: DfuSession) -> None:
        self.session = session

    def device_id(self) -> str:
        return self.session.info.serial or self.session.pipe.name

    def select(self, alt: int) -> Layout:
        self.session.select_alt(alt)
        return self.session.layout(alt)

    def read(self, address: int, length: int, skip: SkipFn | None = None) -> bytes:
        return self.session.read(address, length, skip=skip)

    def write_run(self, start: int, data: bytes, erase: list[int], progress: ProgressFn) -> int:
        s, host = self.session, self.session.host
        for a in sorted(erase, reverse=True):  # the Core's Erase moves the pointer: end on the lowest sector
            s.run(host.erase(a))
        if not erase or min(erase) != start:  # else the last erase left the pointer at `start`
            s.run(host.set_address(start))  # once per run (a command and its poll timeout)
        sent = 0
        for block, address, chunk in chunks(start, data, host.transfer_size, skip_blank=True):
            s.run(host.download(block, chunk, address))
            sent += len(chunk)
            progress(address + len(chunk) - start, len(data))
        s.run(host.abort())
        return sent

    def read_back(self, start: int, length: int) -> bytes:
        return self.session.read(start, length, pointer_is_set=True)  # the run left the pointer at `start`

    def leave(self) -> None:
        self.session.run(self.session.host.leave())

    def close(self) -> None:
        self.session.close()


class DfuUtilBackend:
    """The installed dfu-util: one `-U` / `-D` run per read / write run (it erases by itself).

    Each run re-enumerates the bus and re-reads the descriptors, so runs are kept few: the
    bytes of the last upload of each alt are remembered (patched by every read-back after a
    write), and a read they cover (the region digest after its runs were read back) costs no
    run. They are the device's own bytes read after the last write there, so a digest from
    them is as good as a fresh read."""

    def __init__(self, tool: DfuUtil, vid: int, pid: int, path: str | None = None,
                 leave_address: int = 0x08005000) -> None:
        self.tool, self.vid, self.pid, self.path = tool, vid, pid, path
        self.alt = 0
        self.leave_address = leave_address
        self.force = False  # add dfu-util's `:force` (writing a read-only layout segment, --allow-protected)
        self.runs = 0  # dfu-util invocations (tests and benchmarks read it)
        self._tmp = tempfile.TemporaryDirectory(prefix="sparkflash-dfu-util-")
        self._listing: str | None = None
        self._known: dict[int, tuple[int, bytearray]] = {}  # alt -> (start, bytes last read there)

    def _list(self) -> str:
        if self._listing is None:
            self.runs += 1
            out = self.tool.run(list_args(self.vid, self.pid))
            if "Found DFU" not in out:
                raise TransportError(f"dfu-util finds no DFU device {self.vid:04x}:{self.pid:04x}; {DFU_MODE_HINT}")
            self._listing = out
        return self._listing

    def device_id(self) -> str:
        m = re.search(r'serial="([^"]*)"', self._list())
        return m[1] if m and m[1] else (self.path or f"{self.vid:04x}:{self.pid:04x}")

    def select(self, alt: int) -> Layout:
        self.alt = alt
        m = re.search(rf'alt={alt}, name="([^"]*)"', self._list())
        if m is None:
            raise InputError(f"dfu-util lists no alt setting {alt} for {self.vid:04x}:{self.pid:04x}")
        return parse_layout(m[1])

    def _upload(self, address: int, length: int) -> bytes:
        out = Path(self._tmp.name) / "upload.bin"
        self.runs += 1
        data = self.tool.upload(self.vid, self.pid, self.alt, address, length, out, path=self.path)
        known = self._known.get(self.alt)
        if known is not None and known[0] <= address and address + length <= known[0] + len(known[1]):
            known[1][address - known[0] : address - known[0] + length] = data
        else:
            self._known[self.alt] = (address, bytearray(data))
        return data

    def read(self, address: int, length: int, skip: SkipFn | None = None) -> bytes:
        del skip  # one `-U` run reads the whole range anyway
        known = self._known.get(self.alt)
        if known is not None and known[0] <= address and address + length <= known[0] + len(known[1]):
            return bytes(known[1][address - known[0] : address - known[0] + length])
        return self._upload(address, length)

    def write_run(self, start: int, data: bytes, erase: list[int], progress: ProgressFn) -> int:
        f = Path(self._tmp.name) / "run.bin"
        f.write_bytes(data)
        known = self._known.get(self.alt)
        if known is not None and start < known[0] + len(known[1]) and known[0] < start + len(data):
            del self._known[self.alt]  # stale until read back
        self.runs += 1
        self.tool.download(self.vid, self.pid, self.alt, start, f, path=self.path, force=self.force)
        progress(len(data), len(data))
        return len(data)

    def read_back(self, start: int, length: int) -> bytes:
        return self._upload(start, length)

    def leave(self) -> None:
        out = Path(self._tmp.name) / "leave.bin"
        out.unlink(missing_ok=True)
        self.runs += 1
        self.tool.run(upload_args(self.vid, self.pid, 0, self.leave_address, 4, out, leave=True, path=self.path))

    def close(self) -> None:
        self._tmp.cleanup()


def check_region(board: Board, region: Region) -> Memory:
    """Refuse, before any transfer, what the device would silently ignore or what would brick it."""
    mem = board.memory(region.memory)
    if not mem.contains(region.address, region.size):
        raise InputError(f"region {region.name!r}: 0x{region.address:08x}+{region.size} is outside {mem.name} flash "
                         f"0x{mem.base:08x}..0x{mem.end:08x}")
    prot = mem.protected_overlap(region.address, region.size)
    if prot is not None and not region.allow_protected:
        raise InputError(f"region {region.name!r}: 0x{region.address:08x}..0x{region.end:08x} writes the protected "
                         f"area {prot.name!r} (0x{prot.start:08x}..0x{prot.end:08x}); refused before any transfer "
                         "(set allow_protected on the region / --allow-protected if you really mean it)")
    return mem


class DfuFlasher:
    via = "dfu"

    def __init__(self, backend: DfuBackend, board: Board, *, no_skip: bool = False, leave: bool = False) -> None:
        self.backend, self.board = backend, board
        self.no_skip, self.leave = no_skip, leave
        self._left = False
        # region name -> (address, bytes as read from the device after its write): the pre-read of
        # sectors left alone and the read-back of each rewritten run; the region digest is taken from
        # them instead of reading the region a third time (a Set Address and 1 UPLOAD per KiB saved)
        self._read: dict[str, tuple[int, bytes]] = {}

    def device_id(self) -> str:
        return self.backend.device_id()

    def _select(self, region: Region) -> Memory:
        mem = check_region(self.board, region)
        layout = self.backend.select(mem.dfu_alt)
        bad = layout.covers(region.address, region.size, WRITABLE | ERASABLE)
        if isinstance(self.backend, DfuUtilBackend):
            self.backend.force = bad is not None and region.allow_protected
        if bad is not None and not region.allow_protected:
            raise InputError(f"region {region.name!r}: 0x{region.address:08x} lies in a segment of type "
                             f"'{bad.type_letter}' (0x{bad.start:08x}..0x{bad.end:08x}) of alt {mem.dfu_alt} "
                             f"{layout.name!r}, which is not erasable and writable")
        return mem

    def _current(self, mem: Memory, start: int, last: int, end: int, region: Region, data: bytes) -> bytes:
        """The touched sectors as they are now; with --no-skip only partly covered edge sectors
        are read (their bytes outside the region must survive the erase).

        A sector inside the region is read only up to its first chunk that differs from `data`
        and is not blank: it is rewritten whatever the rest holds (and read back in full after),
        so the rest stays unread (0x00, which keeps it "changed, not blank" for plan_write)."""
        if not self.no_skip:
            def skip(off: int, chunk: bytes) -> int | None:
                a = start + off
                sector = a - (a - start) % mem.sector_size
                if sector < region.address or sector + mem.sector_size > region.end:
                    return None  # an edge sector: its bytes outside the region are kept, all are needed
                want = data[a - region.address : a - region.address + len(chunk)]
                if chunk == want or chunk == bytes([mem.erase_value]) * len(chunk):
                    return None  # still possibly unchanged, or blank (no Erase needed)
                return sector + mem.sector_size - start

            return self.backend.read(start, end - start, skip)
        cur = bytearray(b"\xff" * (end - start))
        if region.address != start:
            cur[: min(mem.sector_size, end - start)] = self.backend.read(start, min(mem.sector_size, end - start))
        if region.end != end:
            cur[last - start :] = self.backend.read(last, end - last)
        return bytes(cur)

    def write_region(self, region: Region, data: bytes, progress: ProgressFn) -> WriteReport:
        mem = self._select(region)
        sectors = mem.sectors(region.address, region.size)
        start, end = sectors[0], min(sectors[-1] + mem.sector_size, mem.end)
        current = self._current(mem, start, sectors[-1], end, region, data)
        plan = plan_write(start, mem.sector_size, current, region.address, data,
                          force=self.no_skip, erased=mem.erase_value)
        report = WriteReport(sectors_skipped=plan.skipped)
        progress(0, region.size)
        self._read.pop(region.name, None)
        seen = bytearray(current)  # device bytes: pre-read, then each run's read-back
        known = not self.no_skip  # with --no-skip only the edge sectors were pre-read
        for run_start, run_end in plan.runs():
            def run_progress(done: int, _total: int, _s: int = run_start) -> None:
                progress(min(region.size, max(0, _s + done - region.address)), region.size)

            back = self._write_run(plan, run_start, run_end, report, region, run_progress)
            seen[run_start - start : run_end - start] = back
        if known or len(plan.changed) == len(sectors):
            off = region.address - start
            self._read[region.name] = (region.address, bytes(seen[off : off + region.size]))
        progress(region.size, region.size)
        return report

    def _write_run(self, plan: SectorPlan, start: int, end: int, report: WriteReport, region: Region,
                   progress: ProgressFn) -> bytes:
        """Write one run, read it back; the read-back bytes (equal to the wanted ones) or VerifyError."""
        want = plan.bytes_of(start, end)
        for attempt in range(2):
            erase = [s for s in range(start, end, plan.sector_size) if attempt or s not in plan.blank]
            report.bytes_sent += self.backend.write_run(start, want, erase, progress)
            report.sectors_erased += len(erase)
            back = self.backend.read_back(start, end - start)
            if back == want:
                return back
            report.retries += 1
        bad = next(i for i, (a, b) in enumerate(zip(back, want, strict=False)) if a != b)
        raise VerifyError(f"region {region.name!r}: read-back differs at 0x{start + bad:08x} "
                          f"(0x{back[bad]:02x}, expected 0x{want[bad]:02x}) after a retry; the Core reports no "
                          "errors, so the flash there may be protected or worn")

    def device_digest(self, region: Region) -> tuple[int, str]:
        """Digest of the region as read from the device: from write_region's own reads when it just
        wrote this region (every byte of it was read after its last write), else read now."""
        got = self._read.pop(region.name, None)
        if got is not None and got[0] == region.address and len(got[1]) == region.size:
            data = got[1]
        else:
            self._select(region)
            data = self.backend.read(region.address, region.size)
        return zlib.crc32(data), hashlib.sha256(data).hexdigest()

    def finish(self) -> None:
        if self.leave and not self._left:
            self._left = True
            self.backend.leave()


def _opt(args: argparse.Namespace, name: str, default: Any) -> Any:
    v = getattr(args, name, default)
    return default if v is None else v


def open_backends(args: argparse.Namespace, board: Board) -> list[DfuBackend]:
    vid, pid = board.usb["dfu"]
    specs: list[str] = list(_opt(args, "device", []))
    if _opt(args, "backend", "pyusb") == "dfu-util":
        if any(s.startswith("virtual:") for s in specs):
            raise InputError("--backend dfu-util cannot reach a virtual core's socket: dfu-util talks only to USB "
                             "devices through libusb; start the core with `sparkflash virtual-core --usb` and run "
                             "with its LD_PRELOAD/UMOCKDEV_DIR and --device 1d50:607f, or use --backend pyusb")
        paths = [s.partition(":")[2] if s.startswith("usb:") else None for s in specs] or [None]
        return [DfuUtilBackend(DfuUtil(), vid, pid, p, board.firmware_address) for p in paths]
    timeout = float(_opt(args, "timeout", DEFAULT_TIMEOUT))
    backends: list[DfuBackend] = []
    for pipe in open_pipes(specs, vid, pid):
        try:
            backends.append(SessionBackend(DfuSession(pipe, timeout=timeout)))
        except BaseException:
            pipe.close()
            for b in backends:
                b.close()
            raise
    return backends


def deploy(args: argparse.Namespace, release: Release, regions: list[Region], on_event: EventFn,
           ledger: Ledger | None) -> list[DeployResult]:
    """The `deploy --via dfu` entry point: one DeployResult per device."""
    board = load_board(release.manifest.board)
    for r in regions:
        check_region(board, r)  # before any device is opened
    backends = open_backends(args, board)

    def one(b: DfuBackend, emit: EventFn) -> list[DeployResult]:
        flasher = DfuFlasher(b, board, no_skip=bool(_opt(args, "no_skip", False)), leave=bool(_opt(args, "leave", False)))
        return [deploy_release(flasher, release, regions=regions, on_event=emit, ledger=ledger,
                               allow_downgrade=bool(_opt(args, "allow_downgrade", False)))]

    try:
        if len(backends) == 1:
            return one(backends[0], on_event)
        # several devices: side by side, each its own sequential loop (USB control transfers are per device)
        jobs: list[Job] = [(backend_label(b), functools.partial(one, b)) for b in backends]
        return run_parallel(jobs, on_event, release, regions, "dfu")
    finally:
        for b in backends:
            b.close()


def backend_label(b: DfuBackend) -> str:
    """How the device was reached (virtual:DIR, usb:BUS-PORT), for tagging events."""
    if isinstance(b, SessionBackend):
        return b.session.pipe.name
    if isinstance(b, DfuUtilBackend):
        return f"usb:{b.path}" if b.path else f"{b.vid:04x}:{b.pid:04x}"
    return b.device_id()
