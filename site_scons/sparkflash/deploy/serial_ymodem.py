"""Deploy over the Core's USB serial port: firmware by the stock `f` + reset, files by SAVE.

Stock firmware can only take a firmware image into the OTA slot (`f`), installed by the
bootloader at the next reset; our listening-mode extension (docs/serial-protocol.md)
adds `SAVE addr len` for any external-flash address and `SUM addr len` for verification.
Every region is checked with SUM against the signed manifest by `deploy.run`; a transfer
that breaks (port gone, device reset, CAN) is retried from scratch a bounded number of
times, reconnecting to the same port path.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

from sparkflash import names
from sparkflash.boards import Board, load_board
from sparkflash.deploy.base import DeployResult, EventFn, ProgressFn, WriteReport
from sparkflash.deploy.run import Ledger, deploy_release
from sparkflash.errors import (
    DeviceError, DeviceGone, InputError, LocalProtocolError, ProtocolError, RemoteProtocolError, TransportError,
    TransportTimeout,
)
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import Release
from sparkflash.protocols import listening as L
from sparkflash.protocols import ymodem as Y
from sparkflash.transports.drive import drive
from sparkflash.transports.serial_port import SerialLink, open_serial

__all__ = ["SerialFlasher", "Plan", "plan_region", "deploy"]

PROMPT_S = 10.0  # stock `f`: wait this long for the prompt or a 'C' (ymodem.md §7.1)


@dataclass(frozen=True)
class Plan:
    """How one region travels: `firmware` (stock `f`, OTA slot + reset) or `save`."""

    how: str
    any_area: bool = False


def plan_region(board: Board, region: Region) -> Plan:
    """Decide (and refuse early, before anything is written) how a region can go by serial."""
    where = f"region {region.name!r} at 0x{region.address:08x}"
    mem = board.memory(region.memory)
    if mem.name == board.firmware_memory:
        if region.address != board.firmware_address:
            raise InputError(f"{where}: serial can write {mem.name} flash only as the firmware image at "
                             f"0x{board.firmware_address:08x} (via the OTA slot); use --via dfu")
        if region.size > board.firmware_max_size:
            raise InputError(f"{where}: {region.size} bytes exceed the bootloader's 0x{board.firmware_max_size:x}-byte copy")
        return Plan("firmware")
    if mem.name != "external":
        raise InputError(f"{where}: serial cannot write the {mem.name} memory")
    prot = mem.protected_overlap(region.address, region.size)
    if prot is not None and not region.allow_protected:
        raise InputError(f"{where}: overlaps the protected area {prot.name!r} and the manifest does not allow it")
    return Plan("save", L.save_range_error(mem, region.address, region.size, False) is not None)


ABORT_SETTLE_S = 0.3  # after CAN CAN: time for the device's cancel message, then it is dropped


class SerialFlasher:
    """A `Flasher` for one device on one serial port path."""

    via = "serial"

    def __init__(self, port: str, board: Board, *, baud: int = 115200, timeout: float | None = None,
                 attempts: int = 3, reconnect_s: float | None = None,
                 opener: Callable[[str, int], SerialLink] = open_serial) -> None:
        self.port, self.board, self.baud = port, board, baud
        t = timeout
        # A Core away for a reset (the bootloader copying 108 KB) is back within seconds.
        self.reconnect_s = reconnect_s if reconnect_s is not None else (15.0 if t is None else t)
        self.attempts, self.opener = attempts, opener
        self.timeouts = Y.SenderTimeouts() if t is None else Y.SenderTimeouts(
            start=t, header_ack=t, after_header=min(2.0, t), block_ack=t, eot_ack=t, end_c=min(6.0, t), end_ack=t)
        self.reply_s = 10.0 if t is None else t
        self._lines = L.LineBuffer()
        self._id: str | None = None
        self.link: SerialLink | None = None
        self._reconnect()  # the port may be re-enumerating: a Core resetting after a killed host's transfer
        self._abort_stale_transfer()

    def _abort_stale_transfer(self) -> None:
        """A host killed mid-YMODEM leaves the device receiving (it would not answer `ID` for tens
        of seconds): CAN CAN ends that session on stock firmware and the agent alike, the newline
        ends a half-sent command line; whatever the device answers to that is dropped."""
        link = self._link()
        link.write(Y.CANCEL + b"\n")
        end = time.monotonic() + ABORT_SETTLE_S
        while (left := end - time.monotonic()) > 0:
            link.read(4096, left)
        link.drain_input()

    # -- Flasher ---------------------------------------------------------------------------
    def device_id(self) -> str:
        if self._id is None:
            fields = self._command(L.encode_id(), "ID").fields
            if len(fields) != 1:
                raise RemoteProtocolError(f"ID: malformed reply from {self.port}: {' '.join(fields)!r}")
            if not names.valid("device id", fields[0].lower()):  # it names a ledger file: never a path
                raise RemoteProtocolError(f"ID: {self.port} replied {fields[0][:40]!r}, not a 24-hex-digit core id")
            self._id = fields[0].lower()
        return self._id

    def write_region(self, region: Region, data: bytes, progress: ProgressFn) -> WriteReport:
        plan = plan_region(self.board, region)
        where = f"region {region.name!r} at 0x{region.address:08x}"
        report = WriteReport(sectors_erased=len(region.erase))
        last: DeviceError | None = None
        for attempt in range(1, self.attempts + 1):
            if last is not None:
                report.retries += 1
                try:
                    self._reconnect()
                except DeviceGone as e:  # it is not coming back: no point in more attempts
                    raise DeviceGone(f"{where}: {e} (after: {last})") from last
            try:
                if plan.how == "firmware":
                    sender = self._send_firmware(data, progress)
                else:
                    sender = self._send_save(region, data, plan.any_area, progress)
            except _Refused as e:
                raise RemoteProtocolError(f"{where}: {e}") from None
            except (TransportError, ProtocolError) as e:
                last = e
                continue
            report.bytes_sent += len(data)
            report.retries += sender.retries
            return report
        assert last is not None
        raise _same_kind(last, f"{where}: failed after {self.attempts} attempts: {last}") from last

    def device_digest(self, region: Region) -> tuple[int, str]:
        ctx = f"region {region.name!r} at 0x{region.address:08x}: SUM"
        return L.parse_sum(self._command(L.encode_sum(region.address, region.size), ctx), ctx)

    def finish(self) -> None:
        """Nothing to do: a firmware image was installed by its own reset."""

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    # -- lines and commands ------------------------------------------------------------------
    def _link(self) -> SerialLink:
        if self.link is None:
            self._reconnect()
        assert self.link is not None
        return self.link

    def _read_line(self, timeout: float) -> str | None:
        end = time.monotonic() + timeout
        while (line := self._lines.next_line()) is None:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self._lines.receive_data(self._link().read(4096, left))
        return line

    def _command(self, line: bytes, context: str) -> L.Reply:
        """Send one extension command; the first OK/ERR line is its reply (other text skipped)."""
        self._lines.take_rest()
        self._link().write(line)
        return self._reply(context, self.reply_s)

    def _reply(self, context: str, timeout: float) -> L.Reply:
        end = time.monotonic() + timeout
        while True:
            got = self._read_line(max(0.0, end - time.monotonic()))
            if got is None:
                raise TransportTimeout(f"{context}: no reply from {self.port} within {timeout:g} s")
            if got.startswith(("OK", "ERR")):
                return L.parse_reply(got, context)

    def _reconnect(self) -> None:
        """Close and reopen the port path; a resetting Core is away for a moment."""
        if self.link is not None:
            self.link.close()
            self.link = None
        self._lines.take_rest()
        end = time.monotonic() + self.reconnect_s
        while True:
            try:
                self.link = self.opener(self.port, self.baud)
                self.link.drain_input()
                return
            except DeviceGone:
                if time.monotonic() >= end:
                    raise DeviceGone(f"serial port {self.port} did not come back within {self.reconnect_s:g} s") from None
                time.sleep(0.1)

    # -- transfers -----------------------------------------------------------------------------
    def _run_sender(self, sender: Y.Sender, progress: ProgressFn) -> None:
        def on_event(ev: object) -> None:
            if isinstance(ev, Y.Progress):
                progress(ev.done, ev.total)

        try:
            rest = drive(self._link(), sender, on_event, initial=self._lines.take_rest())
        except ProtocolError as e:
            self._lines.receive_data(sender.take_rest())
            why = self._device_reason()
            raise _same_kind(e, f"{e}{'; device says: ' + why if why else ''}") from e
        self._lines.receive_data(rest)

    def _device_reason(self) -> str | None:
        """After a cancel the device prints why; worth a second to read it."""
        try:
            end = time.monotonic() + 1.0
            while (line := self._read_line(max(0.0, end - time.monotonic()))) is not None:
                if line.strip(" \x18\x08"):
                    return line.strip(" \x18\x08")
        except TransportError:
            pass
        return None

    def _send_save(self, region: Region, data: bytes, any_area: bool, progress: ProgressFn) -> Y.Sender:
        ctx = f"SAVE 0x{region.address:08x}+0x{region.size:x}"
        try:
            self._command(L.encode_save(region.address, len(data), any_area), ctx)
        except L.Refused as e:
            if e.code == L.ERR_RANGE:
                raise _Refused(str(e)) from None  # the device's range rule will not change on retry
            raise
        sender = Y.Sender(region.name, data, timeouts=self.timeouts)
        self._run_sender(sender, progress)
        self._reply(f"{ctx}: result", self.reply_s)  # OK <len>, or ERR (flash or transfer)
        return sender

    def _send_firmware(self, data: bytes, progress: ProgressFn) -> Y.Sender:
        link = self._link()
        self._lines.take_rest()
        link.write(b"f")
        prompt = self._await_prompt()
        sender = Y.Sender("firmware.bin", data, wait_for_c=not prompt, timeouts=self.timeouts)
        self._run_sender(sender, progress)
        self._await_reset()
        return sender

    def _await_prompt(self) -> bool:
        """True once the prompt line arrives; False if a bare 'C' came first."""
        end = time.monotonic() + PROMPT_S
        while True:
            buf = self._lines.buf
            if L.FW_NOT_SUPPORTED.encode() in buf:
                raise _Refused(f"the device says {L.FW_NOT_SUPPORTED!r} (the app lacks the Ymodem library)")
            i = buf.find(L.FW_PROMPT.encode())
            if i >= 0 and buf.find(b"\n", i) >= 0:
                del buf[: buf.find(b"\n", i) + 1]
                return True
            if b"C" in buf and i < 0:
                del buf[: buf.index(b"C")]
                return False
            left = end - time.monotonic()
            if left <= 0:
                raise TransportTimeout(f"firmware update: no prompt from {self.port} within {PROMPT_S:g} s after 'f'")
            self._lines.receive_data(self._link().read(4096, left))

    def _await_reset(self) -> None:
        """After the last ACK the Core prints its result and resets: read until the port goes."""
        try:
            while (line := self._read_line(3.0)) is not None:
                if L.FW_FAILED in line or "Validation failed" in line:
                    raise RemoteProtocolError(f"firmware update: the device says {line.strip()!r}")
        except DeviceGone:
            pass
        self._reconnect()


def _same_kind(err: DeviceError, message: str) -> DeviceError:
    """A new error of err's family (exit code and class stay meaningful) with more context."""
    for cls in (DeviceGone, TransportTimeout, TransportError, LocalProtocolError):
        if isinstance(err, cls):
            return cls(message)
    return RemoteProtocolError(message) if isinstance(err, ProtocolError) else DeviceError(message)


class _Refused(Exception):
    """The device refused a request for a reason a retry cannot fix."""


def deploy(args: argparse.Namespace, release: Release, regions: list[Region], on_event: EventFn,
           ledger: Ledger) -> list[DeployResult]:
    """`sparkflash deploy|flash --via serial --port PORT`: one device, every region verified."""
    if not getattr(args, "port", None):
        raise InputError("--via serial needs --port (e.g. /dev/ttyACM0, or a virtual core's STATE/tty)")
    board = load_board(release.manifest.board)
    for r in regions:
        plan_region(board, r)  # refuse impossible regions before writing anything
    flasher = SerialFlasher(args.port, board, baud=getattr(args, "baud", 115200), timeout=getattr(args, "timeout", None))
    try:
        return [deploy_release(flasher, release, regions=regions, on_event=on_event, ledger=ledger,
                               allow_downgrade=getattr(args, "allow_downgrade", False))]
    finally:
        flasher.close()
