"""DfuSe (DFU 1.1 + ST extensions) host side as a sans-I/O state machine, with the Core's quirks.

Each operation (start, set_address, erase, download, upload, abort, leave) is an
`Operation`: the driver asks `next_event()` for a `ControlRequest` to send or a `Wait`
(the device's bwPollTimeout, as a duration the driver must let pass), feeds the reply
back with `on_reply()`, and stops at `Done`. The machine never sleeps or touches USB.

Quirks handled (shared/specs/dfuse.md §4): the Core never reports errors, so callers
verify by UPLOAD; Erase moves the address pointer; CLRSTATUS outside dfuERROR *causes*
dfuERROR, so it is sent only in dfuERROR; leave is answered with dfuDNLOAD-IDLE.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from sparkflash.errors import DeviceGone, LocalProtocolError, RemoteProtocolError

__all__ = [
    "Req", "State", "Status", "ControlRequest", "Wait", "Done", "EndpointStalled", "DfuStatus",
    "Operation", "DfuseHost", "encode_set_address", "encode_erase", "parse_status", "encode_status",
    "CMD_SET_ADDRESS", "CMD_ERASE", "MAX_TRANSFER", "OUT", "IN",
]

OUT, IN = 0x21, 0xA1  # class request to interface, host->device / device->host
CMD_SET_ADDRESS, CMD_ERASE = 0x21, 0x41
MAX_TRANSFER = 1024  # the Core's RAM buffer; never move more per request
MAX_ZERO_POLLS = 100  # dfu-util's "device stuck" limit for busy replies with no poll timeout
MAX_BUSY_MS = 60_000  # no Core operation takes this long (sector erase: 25 ms max); stop waiting
MAX_BUSY_POLLS = 2_000  # nor needs this many GETSTATUS (the Core: exactly 2 per request)


class Req(IntEnum):
    DETACH = 0
    DNLOAD = 1
    UPLOAD = 2
    GETSTATUS = 3
    CLRSTATUS = 4
    GETSTATE = 5
    ABORT = 6


class State(IntEnum):
    APP_IDLE = 0
    APP_DETACH = 1
    IDLE = 2
    DNLOAD_SYNC = 3
    DNBUSY = 4
    DNLOAD_IDLE = 5
    MANIFEST_SYNC = 6
    MANIFEST = 7
    MANIFEST_WAIT_RESET = 8
    UPLOAD_IDLE = 9
    ERROR = 10


class Status(IntEnum):
    OK = 0x00
    errTARGET = 0x01
    errFILE = 0x02
    errWRITE = 0x03
    errERASE = 0x04
    errCHECK_ERASED = 0x05
    errPROG = 0x06
    errVERIFY = 0x07
    errADDRESS = 0x08
    errNOTDONE = 0x09
    errFIRMWARE = 0x0A
    errVENDOR = 0x0B
    errUSBR = 0x0C
    errPOR = 0x0D
    errUNKNOWN = 0x0E
    errSTALLEDPKT = 0x0F


def _state_name(v: int) -> str:
    try:
        name = State(v).name.replace("_", "-")
        return f"dfu{name}" if v >= 2 else name
    except ValueError:
        return f"state {v}"


@dataclass(frozen=True)
class ControlRequest:
    """One EP0 control transfer: `data` for OUT requests, `length` wanted for IN requests."""

    bmRequestType: int
    bRequest: int
    wValue: int = 0
    wIndex: int = 0
    data: bytes = b""
    length: int = 0

    @property
    def is_in(self) -> bool:
        return bool(self.bmRequestType & 0x80)

    @property
    def wLength(self) -> int:
        return self.length if self.is_in else len(self.data)


@dataclass(frozen=True)
class Wait:
    """Let `seconds` pass before the next request (bwPollTimeout); the driver owns the clock."""

    seconds: float


@dataclass(frozen=True)
class Done:
    value: Any = None


Event = ControlRequest | Wait | Done


class EndpointStalled(RemoteProtocolError):
    """The device stalled a control request (the Core's answer to a request in the wrong state)."""


@dataclass(frozen=True)
class DfuStatus:
    status: int
    poll_ms: int
    state: int
    string: int = 0

    def describe(self) -> str:
        try:
            st = Status(self.status).name
        except ValueError:
            st = f"0x{self.status:02x}"
        return f"{_state_name(self.state)}/{st}"


def parse_status(raw: bytes) -> DfuStatus:
    if len(raw) != 6:
        raise RemoteProtocolError(f"DFU GETSTATUS reply of {len(raw)} bytes, expected 6 ({raw.hex()})")
    return DfuStatus(raw[0], raw[1] | raw[2] << 8 | raw[3] << 16, raw[4], raw[5])


def encode_status(s: DfuStatus) -> bytes:
    return bytes([s.status]) + s.poll_ms.to_bytes(3, "little") + bytes([s.state, s.string])


def encode_set_address(address: int) -> bytes:
    return struct.pack("<BI", CMD_SET_ADDRESS, address)


def encode_erase(address: int) -> bytes:
    return struct.pack("<BI", CMD_ERASE, address)


_Gen = Generator[ControlRequest | Wait, Any, Any]
#: read(skip=...): (offset, chunk just read) -> the offset to read next, or None for the next chunk
SkipFn = Callable[[int, bytes], int | None]


class Operation:
    """One host operation; drive it with next_event / on_reply / on_stall / on_gone."""

    def __init__(self, gen: _Gen) -> None:
        self._gen = gen
        self._event: Event = self._step(lambda: next(gen))

    def _step(self, f: Any) -> Event:
        try:
            ev: Event = f()
        except StopIteration as stop:
            ev = Done(stop.value)
        self._event = ev
        return ev

    def next_event(self) -> Event:
        return self._event

    def on_reply(self, data: bytes = b"") -> Event:
        """The reply to the last ControlRequest (IN data, or b"" for OUT), or b"" after a Wait."""
        if isinstance(self._event, Done):
            raise LocalProtocolError("operation already finished")
        return self._step(lambda: self._gen.send(data))

    def on_stall(self, exc: EndpointStalled) -> Event:
        """The last ControlRequest was stalled; the operation fails unless it expected that."""
        return self._step(lambda: self._gen.throw(exc))

    def on_gone(self, exc: DeviceGone) -> Event:
        return self._step(lambda: self._gen.throw(exc))


class DfuseHost:
    """Host-side DfuSe for one interface; tracks the device state from GETSTATUS replies."""

    def __init__(self, interface: int = 0, transfer_size: int = MAX_TRANSFER) -> None:
        self.interface = interface
        self.transfer_size = min(transfer_size, MAX_TRANSFER)
        self.state: int | None = None
        self.last_status: DfuStatus | None = None

    # -- request builders ---------------------------------------------------------
    def _req(self, req: Req, value: int = 0, data: bytes = b"", length: int = 0) -> ControlRequest:
        return ControlRequest(IN if req in (Req.UPLOAD, Req.GETSTATUS, Req.GETSTATE) else OUT,
                              int(req), value, self.interface, data, length)

    def _getstatus(self) -> Generator[ControlRequest, bytes, DfuStatus]:
        st = parse_status((yield self._req(Req.GETSTATUS, length=6)))
        self.state, self.last_status = st.state, st
        return st

    def _fail(self, what: str, st: DfuStatus) -> Generator[ControlRequest, bytes, None]:
        if st.state == State.ERROR:
            yield self._req(Req.CLRSTATUS)  # only legal here: elsewhere it would cause dfuERROR
            self.state = State.IDLE
        raise RemoteProtocolError(f"{what}: device answered {st.describe()}")

    def _drain(self, what: str, command: bool) -> _Gen:
        """GETSTATUS until dfuDNLOAD-IDLE, letting each bwPollTimeout pass (dfu_util's loop)."""
        st = yield from self._getstatus()
        if command and st.state != State.DNBUSY and st.state != State.ERROR:
            raise RemoteProtocolError(f"{what}: wrong state after command: {st.describe()}, expected dfuDNBUSY")
        zero = busy_ms = polls = 0
        while st.state in (State.DNBUSY, State.DNLOAD_SYNC):
            zero = zero + 1 if st.poll_ms == 0 else 0
            busy_ms, polls = busy_ms + st.poll_ms, polls + 1
            if zero > MAX_ZERO_POLLS or busy_ms > MAX_BUSY_MS or polls > MAX_BUSY_POLLS:
                raise RemoteProtocolError(f"{what}: device stuck in {st.describe()} after {polls} polls "
                                          f"and {busy_ms} ms")
            if st.poll_ms:
                yield Wait(st.poll_ms / 1000)
            st = yield from self._getstatus()
        if st.state != State.DNLOAD_IDLE or st.status != Status.OK:
            yield from self._fail(what, st)
        return st

    def _need(self, what: str, allowed: tuple[State, ...]) -> None:
        if self.state is not None and self.state not in allowed:
            names = " or ".join(_state_name(s) for s in allowed)
            raise LocalProtocolError(f"{what} needs {names}, device is in {_state_name(self.state)}")

    # -- operations -------------------------------------------------------------
    def start(self) -> Operation:
        """Bring the device to dfuIDLE from whatever a previous host left behind."""
        return Operation(self._start())

    def _start(self) -> _Gen:
        st = yield from self._getstatus()
        if st.state not in (State.IDLE, State.ERROR):
            yield self._req(Req.ABORT)  # "Aborting previous incomplete transfer"
            st = yield from self._getstatus()
        if st.state not in (State.IDLE, State.ERROR):
            yield self._req(Req.CLRSTATUS)  # on the Core this forces dfuERROR, which CLRSTATUS then clears
            st = yield from self._getstatus()
        if st.state == State.ERROR:
            yield self._req(Req.CLRSTATUS)
            st = yield from self._getstatus()
        if st.state != State.IDLE:
            raise RemoteProtocolError(f"cannot bring the device to dfuIDLE: it answers {st.describe()}")
        return st

    def command(self, payload: bytes, what: str) -> Operation:
        return Operation(self._command(payload, what))

    def _command(self, payload: bytes, what: str) -> _Gen:
        self._need(what, (State.IDLE, State.DNLOAD_IDLE))
        yield self._req(Req.DNLOAD, 0, payload)
        return (yield from self._drain(what, command=True))

    def set_address(self, address: int) -> Operation:
        return self.command(encode_set_address(address), f"Set Address Pointer 0x{address:08x}")

    def erase(self, address: int) -> Operation:
        """Erase the page/sector holding `address`. NB the Core then points at `address`."""
        return self.command(encode_erase(address), f"Erase 0x{address:08x}")

    def download(self, block: int, data: bytes, address: int = 0) -> Operation:
        """DNLOAD one chunk as wBlockNum `block` (>= 2) and wait until the device is done."""
        return Operation(self._download(block, data, address))

    def _download(self, block: int, data: bytes, address: int) -> _Gen:
        what = f"DNLOAD block {block} (0x{address:08x})"
        if not 2 <= block <= 0xFFFF or not 0 < len(data) <= self.transfer_size:
            raise LocalProtocolError(f"{what}: block must be 2..65535 and 1..{self.transfer_size} bytes, "
                                     f"got {len(data)} bytes")
        self._need(what, (State.IDLE, State.DNLOAD_IDLE))
        yield self._req(Req.DNLOAD, block, data)
        return (yield from self._drain(what, command=False))

    def abort(self) -> Operation:
        return Operation(self._abort())

    def _abort(self) -> _Gen:
        yield self._req(Req.ABORT)
        st = yield from self._getstatus()
        if st.state != State.IDLE:
            yield from self._fail("ABORT", st)
        return st

    def upload(self, block: int, length: int, address: int = 0) -> Operation:
        """UPLOAD one chunk (wBlockNum >= 2; 1 is never sent: it corrupts the Core's state)."""
        return Operation(self._upload(block, length, address))

    def _upload(self, block: int, length: int, address: int) -> _Gen:
        what = f"UPLOAD block {block} (0x{address:08x})"
        if not 2 <= block <= 0xFFFF or not 0 < length <= self.transfer_size:
            raise LocalProtocolError(f"{what}: block must be 2..65535 and 1..{self.transfer_size} bytes")
        self._need(what, (State.IDLE, State.UPLOAD_IDLE))
        data = yield self._req(Req.UPLOAD, block, length=length)
        if len(data) > length:  # USB cannot deliver more than wLength: a broken device or transport
            raise RemoteProtocolError(f"{what}: device sent {len(data)} bytes for a {length}-byte request")
        self.state = State.UPLOAD_IDLE if len(data) == length else State.IDLE
        return bytes(data)

    def read(self, address: int, length: int, *, pointer_is_set: bool = False,
             skip: SkipFn | None = None) -> Operation:
        """Set Address, ABORT to dfuIDLE, UPLOAD blocks 2.. (last one trimmed), ABORT.

        `pointer_is_set`: the pointer already holds `address` (data blocks do not move it), so
        a read-back right after writing a run saves the Set Address and its poll timeout.
        `skip(offset, chunk)`: after each chunk, the offset to read next (rounded down to a
        block boundary, at least the next chunk) or None for the next one; the block number
        places an UPLOAD, so skipped blocks cost nothing. Bytes not read are 0x00."""
        return Operation(self._read(address, length, pointer_is_set, skip))

    def _read(self, address: int, length: int, pointer_is_set: bool = False, skip: SkipFn | None = None) -> _Gen:
        if not pointer_is_set:
            yield from self._command(encode_set_address(address), f"Set Address Pointer 0x{address:08x}")
        if self.state != State.IDLE:
            yield from self._abort()
        if (length + self.transfer_size - 1) // self.transfer_size + 1 > 0xFFFF:
            raise LocalProtocolError(f"read of {length} bytes at 0x{address:08x} needs more than 65534 blocks")
        out = bytearray(length)
        off = 0
        while off < length:
            n = min(self.transfer_size, length - off)
            chunk = yield from self._upload(2 + off // self.transfer_size, n, address + off)
            out[off : off + len(chunk)] = chunk
            if len(chunk) < n:
                raise RemoteProtocolError(f"UPLOAD at 0x{address + off:08x}: device sent {len(chunk)} of {n} bytes")
            nxt = skip(off, bytes(chunk)) if skip is not None else None
            # a block boundary at or before `nxt` (never past a byte asked for), at least the next chunk
            off = off + n if nxt is None else max(off + n, nxt - nxt % self.transfer_size)
        yield from self._abort()
        return bytes(out)

    def leave(self) -> Operation:
        """Zero-length DNLOAD + one GETSTATUS; dfuDNLOAD-IDLE (the Core), MANIFEST states or a
        vanished device all mean the device is resetting into the application."""
        return Operation(self._leave())

    def _leave(self) -> _Gen:
        self._need("leave", (State.IDLE, State.DNLOAD_IDLE))
        try:
            yield self._req(Req.DNLOAD, 2, b"")
            st = yield from self._getstatus()
        except (DeviceGone, EndpointStalled):
            return None
        if st.state not in (State.DNLOAD_IDLE, State.MANIFEST, State.MANIFEST_WAIT_RESET, State.MANIFEST_SYNC):
            raise RemoteProtocolError(f"leave: device answered {st.describe()}")
        return st
