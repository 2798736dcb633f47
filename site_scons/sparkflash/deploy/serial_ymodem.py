"""Deploy over a Core's serial port: find out what the device can do, then use only that.

The first byte sent is the stock key `i` (docs/serial-protocol.md §2). A device that
answers with its id line and then `sparkflash-agent 1` runs our agent: line commands
(SUMS to skip unchanged sectors, SAVE for any external address, SUM to verify). A device
that answers with the id line only runs stock firmware: the firmware image goes by the
stock `f` key (OTA slot + reset), nothing else. A device that answers with a YMODEM 'C'
is an application waiting in `System.serialSaveFile(stream, address)`: it takes one file
at the address compiled into it, which the user states (`--stock-save-address`) and which
must be the region's. Stock devices cannot report a digest and their receiver ignores
block CRCs, so such regions are "sent", never "verified". Regions a device cannot take
are refused before any byte of them is sent, naming what the firmware lacks.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from sparkflash.boards import Board, load_board
from sparkflash.deploy.base import DeployResult, EventFn, ProgressFn, Unverifiable, WriteReport, accepted_statuses
from sparkflash.deploy.run import Ledger, deploy_release
from sparkflash.errors import (
    DeviceError,
    DeviceGone,
    InputError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    TransportError,
    TransportTimeout,
)
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import Release
from sparkflash.protocols import listening as L
from sparkflash.protocols import serial_caps as C
from sparkflash.protocols import ymodem as Y
from sparkflash.transports.drive import drive
from sparkflash.transports.serial_port import SerialLink, open_serial

__all__ = ["SENT_PROVES", "Plan", "SerialFlasher", "deploy", "plan_for_device", "plan_region"]

PROMPT_S = 10.0  # stock `f`: wait this long for the prompt or a 'C' (ymodem.md §7.1)
ID_WAIT_S = 1.0  # for the id line after `i` (stock prints it at 1 ms per character)
AGENT_WAIT_S = 0.5  # for the agent line after the id line
CANCEL_DRAIN_S = 0.7  # after CAN x 8: a stock receiver prints its failure and (in an app) the prompt
SENT_PROVES = ("every block was acknowledged by the stock receiver, which neither checks block CRCs "
               "nor can report a digest: nothing proves the bytes stored")


@dataclass(frozen=True)
class Plan:
    """How one region travels: `firmware` (stock `f`, OTA slot + reset), `save` (agent
    SAVE) or `stock-save` (the YMODEM file alone, into an app's serialSaveFile)."""

    how: str
    any_area: bool = False


def plan_region(board: Board, region: Region) -> Plan:
    """What any serial device could do with a region; refuses the impossible early."""
    where = f"region {region.name!r} at 0x{region.address:08x}"
    if region.size == 0:
        raise InputError(f"{where}: the region is empty; a Spark receiver reports a 0-byte file as a failure")
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


def stock_save_error(board: Board, region: Region, save_address: int | None) -> str | None:
    """Why an app's serialSaveFile(stream, save_address) cannot take `region`, or None.

    Its receiver erases ceil(size / 4 KiB) sectors from its address before ACKing the
    header and then stores whole blocks (0x1A padding included): an unaligned address
    fails after erasing the start of its sector, and the 2015 library's range rule
    (HAL_FLASH_CheckValidAddressRange) is the most any stock receiver allows."""
    ext = board.memory("external")
    if save_address is None:
        return ("the device runs an application waiting in serialSaveFile; pass --stock-save-address "
                "with the address that application saves to")
    if region.memory != "external" or region.address != save_address:
        return (f"the application saves only to 0x{save_address:06x} (--stock-save-address); this region is at "
                f"0x{region.address:08x}")
    if region.address % ext.sector_size:
        return f"0x{region.address:06x} is not 4 KiB-aligned; the stock receiver fails there after erasing"
    ota, user = ext.area("ota"), ext.area("user")
    end = region.address + region.size
    if not ((region.address == ota.start and end <= ota.end) or (user.start <= region.address and end <= user.end)):
        return (f"0x{region.address:06x}+0x{region.size:x} is neither the OTA slot nor inside the user area "
                "(the stock receiver's range rule)")
    return None


def plan_for_device(board: Board, regions: list[Region], caps: C.Capabilities, save_address: int | None) -> list[Plan]:
    """Plans for every region on this device, or InputError naming what the firmware lacks
    (before any byte of any region is sent)."""
    plans: list[Plan] = []
    for r in regions:
        where = f"region {r.name!r} at 0x{r.address:08x}"
        base = plan_region(board, r)
        if caps.kind == "agent":
            plans.append(base)
        elif caps.kind == "stock":
            if base.how != "firmware":
                raise InputError(
                    f"{where}: the device runs stock firmware without the sparkflash agent (it answered `i` with "
                    "its id only): it can take only the firmware image, by `f`; files need the agent "
                    "(docs/device-agent.md) or an application calling serialSaveFile (--stock-save-address)")
            plans.append(base)
        else:
            why = stock_save_error(board, r, save_address)
            if why is not None:
                raise InputError(f"{where}: {why}")
            plans.append(Plan("stock-save"))
    if caps.kind == "receiver":
        if len(plans) > 1:
            raise InputError("an application in serialSaveFile takes one file per call; deploy one region "
                             "(--region) at a time")
        ext = board.memory("external")
        r = regions[0]
        erased_end = r.address + -(-r.size // ext.sector_size) * ext.sector_size
        if Y.padded_size(r.size) > erased_end - r.address:  # cannot happen with 4 KiB-aligned starts
            raise InputError(f"region {r.name!r}: block padding would run past the erased sectors")
    return plans


def _safe_port_name(port: str) -> str:
    return "serial-" + re.sub(r"[^A-Za-z0-9._-]+", "_", port).strip("_")[-64:]


class SerialFlasher:
    """A `Flasher` for one device on one serial port path (or pyserial URL)."""

    via = "serial"

    def __init__(self, port: str, board: Board, *, baud: int = 115200, timeout: float | None = None,
                 attempts: int = 3, reconnect_s: float | None = None,
                 opener: Callable[[str, int], SerialLink] = open_serial,
                 stock_save_address: int | None = None) -> None:
        self.port, self.board, self.baud = port, board, baud
        t = timeout
        # A Core away for a reset (the bootloader copying 108 KB) is back within seconds.
        self.reconnect_s = reconnect_s if reconnect_s is not None else (15.0 if t is None else max(t, 5.0))
        self.attempts, self.opener = attempts, opener
        self.timeouts = Y.SenderTimeouts() if t is None else Y.SenderTimeouts(
            start=t, header_ack=t, after_header=min(2.0, t), block_ack=t, eot_ack=t, end_c=min(6.0, t), end_ack=t)
        self.reply_s = 10.0 if t is None else t
        self.stock_save_address = stock_save_address
        ext = board.memory("external")
        self.erase_max_s = ext.erase_max_s
        self._lines = L.LineBuffer()
        self.link: SerialLink | None = self.opener(port, baud)
        try:
            self.caps = self.detect()
        except BaseException:
            self.close()
            raise

    # -- detection ---------------------------------------------------------------------------
    def detect(self) -> C.Capabilities:
        """`i` first; a silent or mid-YMODEM device is cancelled, drained and asked again
        (a host killed during a transfer leaves the receiver waiting for blocks)."""
        for _ in range(2):
            link = self._link()
            link.drain_input()
            self._lines.take_rest()
            link.write(b"i")
            buf = bytearray()
            end, saw_id_at = time.monotonic() + ID_WAIT_S, None
            while True:
                did, ver, receiver = C.parse_identity(bytes(buf))
                if did is not None and saw_id_at is None:
                    saw_id_at = time.monotonic()
                    end = saw_id_at + AGENT_WAIT_S
                if ver is not None or receiver:
                    break
                left = end - time.monotonic()
                if left <= 0:
                    break
                buf += link.read(4096, left)
            if did is not None:
                return C.Capabilities("agent" if ver == 1 else "stock", did, ver)
            if L.ID_TEXT.encode() in buf:  # an id line whose id is not one: it must never name a file
                line = bytes(buf[buf.index(L.ID_TEXT.encode()):]).split(b"\n", 1)[0]
                raise RemoteProtocolError(f"serial port {self.port}: `i` answered {line[:80]!r}, "
                                          "not a 24-hex-digit core id")
            # A 'C' (or nothing): a receiver. Cancel whatever session it is in.
            link.write(Y.CANCEL)
            after = bytearray()
            end = time.monotonic() + CANCEL_DRAIN_S
            while (left := end - time.monotonic()) > 0:
                after += link.read(4096, left)
                if L.FW_PROMPT.encode() in after:
                    break
            if L.FW_PROMPT.encode() in after:  # a fresh serialSaveFile call: an app's receiver
                return C.Capabilities("receiver")
        raise TransportTimeout(f"serial port {self.port}: no answer to the stock key `i` "
                               "(is the Core in listening mode, blinking blue, or running an app in serialSaveFile?)")

    # -- Flasher ---------------------------------------------------------------------------
    def device_id(self) -> str:
        return self.caps.device_id or _safe_port_name(self.port)

    def release_record(self) -> tuple[str, str, str] | None:
        """The device's own record of its last verified release (`REC`; only the agent has one)."""
        if self.caps.kind != "agent":
            return None
        return L.parse_rec(self._command(L.encode_rec(), "REC"), f"{self.port}: REC")

    def set_release_record(self, name: str, version: str, sha256: str) -> None:
        """After a verified signed deploy: `REC SET`, so any host can refuse a downgrade later."""
        if self.caps.kind == "agent":
            self._command(L.encode_rec_set(name, version, sha256), "REC SET")

    def write_region(self, region: Region, data: bytes, progress: ProgressFn) -> WriteReport:
        plan = plan_for_device(self.board, [region], self.caps, self.stock_save_address)[0]
        where = f"region {region.name!r} at 0x{region.address:08x}"
        mem = self.board.memory(region.memory)
        report = WriteReport(sectors_erased=len(region.erase))
        runs = [(region.address, len(data))]
        if self.caps.kind == "agent":
            runs = self._changed(region, data)
            report.sectors_skipped = len(C.sector_pieces(region.address, len(data))) - sum(
                len(C.sector_pieces(a, n)) for a, n in runs)
            if not runs:
                report.sectors_erased = 0
                progress(len(data), len(data))
                return report  # unchanged: no `f`, no reboot
            if plan.how == "firmware":
                runs = [(region.address, len(data))]  # the OTA slot takes whole images only
                report.sectors_skipped = 0
            else:
                report.sectors_erased = len({s for a, n in runs for s in mem.sectors(a, n)})
        for a, n in runs:
            piece = data[a - region.address : a - region.address + n]
            self._write_with_retries(where, plan, region, a, piece, report, progress)
        return report

    def device_digest(self, region: Region) -> tuple[int, str]:
        if self.caps.kind != "agent":
            raise Unverifiable("sent", SENT_PROVES)
        ctx = f"region {region.name!r} at 0x{region.address:08x}: SUM"
        return L.parse_sum(self._command(L.encode_sum(region.address, region.size), ctx), ctx)

    def finish(self) -> None:
        """Nothing to do: a firmware image was installed by its own reset."""

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    # -- skipping unchanged sectors --------------------------------------------------------
    def _changed(self, region: Region, data: bytes) -> list[tuple[int, int]]:
        """Runs of 4 KiB pieces that differ on the device (SUMS; SUM per piece if the agent
        is older)."""
        pieces = C.sector_pieces(region.address, len(data))
        ctx = f"region {region.name!r} at 0x{region.address:08x}: SUMS"
        try:
            crcs = C.parse_sums(self._command(C.encode_sums(region.address, len(data)), ctx), len(pieces), ctx)
        except L.Refused as e:
            if e.code != L.ERR_SYNTAX:
                raise
            crcs = [L.parse_sum(self._command(L.encode_sum(a, n), ctx), ctx)[0] for a, n in pieces]
        return C.changed_runs(region.address, data, crcs)

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
        """Send one agent command; the first OK/ERR line is its reply (other text skipped)."""
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
        """Close and reopen the port path until the device answers `i` again: a resetting
        Core is away for a moment, and through a network bridge (socket://, rfc2217://)
        the first connections may still reach the old port or none."""
        if self.link is not None:
            self.link.close()
            self.link = None
        self._lines.take_rest()
        end = time.monotonic() + self.reconnect_s
        last: Exception | None = None
        while time.monotonic() < end:
            try:
                self.link = self.opener(self.port, self.baud)
                self.link.drain_input()
                self.caps = self.detect()
                return
            except (TransportError, ProtocolError) as e:
                last = e
                if self.link is not None:
                    self.link.close()
                    self.link = None
                time.sleep(0.2)
        raise DeviceGone(f"serial port {self.port} did not come back within {self.reconnect_s:g} s"
                         f"{f' ({last})' if last else ''}")

    # -- transfers -----------------------------------------------------------------------------
    def _write_with_retries(self, where: str, plan: Plan, region: Region, address: int, data: bytes,
                            report: WriteReport, progress: ProgressFn) -> None:
        last: DeviceError | None = None
        for _attempt in range(self.attempts):
            if last is not None:
                report.retries += 1
                try:
                    self._reconnect()
                except DeviceGone as e:  # it is not coming back: no point in more attempts
                    raise DeviceGone(f"{where}: {e} (after: {last})") from last
            try:
                if plan.how == "firmware":
                    sender = self._send_firmware(data, progress)
                elif plan.how == "stock-save":
                    sender = self._send_stock_save(region, data, progress)
                else:
                    sender = self._send_save(region, address, data, plan.any_area, progress)
            except _Refused as e:
                raise RemoteProtocolError(f"{where}: {e}") from None
            except (TransportError, ProtocolError) as e:
                last = e
                continue
            report.bytes_sent += len(data)
            report.retries += sender.retries
            return
        assert last is not None
        raise _same_kind(last, f"{where}: failed after {self.attempts} attempts: {last}") from last

    def _sender(self, name: str, data: bytes, *, wait_for_c: bool, erases: bool) -> Y.Sender:
        """A sender whose header wait covers a stock receiver erasing the whole file first."""
        t = self.timeouts
        if erases:
            sector = self.board.memory("external").sector_size
            t = Y.SenderTimeouts(start=t.start, header_ack=max(t.header_ack, Y.header_wait_s(
                len(data), sector, self.erase_max_s, base=t.header_ack)), after_header=t.after_header,
                block_ack=t.block_ack, eot_ack=t.eot_ack, end_c=t.end_c, end_ack=t.end_ack)
        return Y.Sender(name, data, wait_for_c=wait_for_c, timeouts=t, stock_receiver=erases)

    def _run_sender(self, sender: Y.Sender, progress: ProgressFn, offset: int = 0, total: int | None = None) -> None:
        def on_event(ev: object) -> None:
            if isinstance(ev, Y.Progress):
                progress(offset + ev.done, total if total is not None else ev.total)

        try:
            rest = drive(self._link(), sender, on_event, initial=self._lines.take_rest())
        except ProtocolError as e:
            self._lines.receive_data(sender.take_rest())
            why = self._device_reason()
            if why and L.FW_TOO_BIG in why:  # the receiver's size rule: a retry cannot help
                raise _Refused(f"{e}; device says: {why}") from e
            raise _same_kind(e, f"{e}{'; device says: ' + why if why else ''}") from e
        self._lines.receive_data(rest)

    def _device_reason(self) -> str | None:
        """After a cancel the device prints why; worth a second to read it."""
        try:
            end = time.monotonic() + 1.0
            while (line := self._read_line(max(0.0, end - time.monotonic()))) is not None:
                text = line.strip(" \x18\x08C")
                if text:
                    return text
        except TransportError:
            pass
        return None

    def _send_save(self, region: Region, address: int, data: bytes, any_area: bool, progress: ProgressFn) -> Y.Sender:
        ctx = f"SAVE 0x{address:08x}+0x{len(data):x}"
        ext = self.board.memory("external")
        # A piece of a region the manifest vouches for may need ANY where the region did not.
        any_piece = any_area or L.save_range_error(ext, address, len(data), False) is not None
        try:
            self._command(L.encode_save(address, len(data), any_piece), ctx)
        except L.Refused as e:
            if e.code == L.ERR_RANGE:
                raise _Refused(str(e)) from None  # the device's range rule will not change on retry
            raise
        sender = self._sender(region.name, data, wait_for_c=True, erases=False)
        self._run_sender(sender, progress, address - region.address, region.size)
        self._reply(f"{ctx}: result", self.reply_s)  # OK <len>, or ERR (flash or transfer)
        return sender

    def _send_stock_save(self, region: Region, data: bytes, progress: ProgressFn) -> Y.Sender:
        """The YMODEM file alone: the app's receiver is (or will be, 0.5 s after its prompt)
        sending 'C'."""
        link = self._link()
        link.drain_input()
        self._lines.take_rest()
        sender = self._sender(region.name, data, wait_for_c=True, erases=True)
        self._run_sender(sender, progress)
        self._await_result(reset=False)
        return sender

    def _send_firmware(self, data: bytes, progress: ProgressFn) -> Y.Sender:
        link = self._link()
        self._lines.take_rest()
        link.write(b"f")
        prompt = self._await_prompt()
        sender = self._sender("firmware.bin", data, wait_for_c=not prompt, erases=True)
        self._run_sender(sender, progress)
        self._await_result(reset=True)
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

    def _await_result(self, *, reset: bool) -> None:
        """After the last ACK the receiver prints its result; a firmware update then resets
        the Core (the port goes, a new one comes: reconnect until it answers `i`)."""
        try:
            while (line := self._read_line(3.0)) is not None:
                if L.FW_FAILED in line or "Validation failed" in line or "Verification failed" in line:
                    raise RemoteProtocolError(f"the device says {line.strip(' C')!r}")
                if L.FW_TOO_BIG in line:
                    raise _Refused(f"the device says {line.strip(' C')!r}")
                if not reset and line.startswith("Size: "):
                    return
        except DeviceGone:
            pass
        if reset:
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
    """`sparkflash deploy|flash --via serial --port PORT`: one device; regions verified by the
    agent's digests, or "sent" to stock firmware (success only with --accept-unverified)."""
    if not getattr(args, "port", None):
        raise InputError("--via serial needs --port (e.g. /dev/ttyACM0, or a virtual core's STATE/tty)")
    board = load_board(release.manifest.board)
    for r in regions:
        plan_region(board, r)  # refuse impossible regions before opening anything
    save_address = getattr(args, "stock_save_address", None)
    flasher = SerialFlasher(args.port, board, baud=getattr(args, "baud", 115200), timeout=getattr(args, "timeout", None),
                            stock_save_address=save_address)
    try:
        plan_for_device(board, regions, flasher.caps, save_address)  # before any byte of any region
        return [deploy_release(flasher, release, regions=regions, on_event=on_event, ledger=ledger,
                               allow_downgrade=getattr(args, "allow_downgrade", False),
                               accepted=accepted_statuses(getattr(args, "require_verified", False),
                                                            getattr(args, "accept_unverified", False)))]
    finally:
        flasher.close()
