"""The Spark Core bootloader's DfuSe device side, sans-I/O, quirks included (dfuse.md §4).

Fed one control request at a time by the virtual core's endpoint; flash work goes to
two `Flash` objects (the virtual NOR images). Like the Core it never reports an error:
bad addresses, protected pages and odd commands all end in bStatus OK, so only an
UPLOAD read-back shows what happened. `take_poll_ms()` tells the endpoint how long
the Core would be busy (its bwPollTimeout), `reset_requested` that it must reset.
"""

from __future__ import annotations

import struct
from typing import Protocol

from sparkflash.protocols.dfuse import (
    CMD_ERASE,
    CMD_SET_ADDRESS,
    IN,
    MAX_TRANSFER,
    OUT,
    ControlRequest,
    DfuStatus,
    Req,
    State,
    Status,
    encode_status,
)

__all__ = ["Flash", "DfuseDevice", "STALL", "POLL_MS"]

STALL = None  # returned by handle() for a stalled request
GET_COMMANDS = bytes([0x00, CMD_SET_ADDRESS, CMD_ERASE])
BUGGY_STATE = 15  # what the Core stores in its state variable after UPLOAD block 1
# bwPollTimeout by the pointer's memory: (erase, anything else)   [Core usb_prop.c]
POLL_MS = {"internal": (50, 50), "external": (20, 30)}


class Flash(Protocol):
    base: int
    size: int

    def read(self, address: int, length: int) -> bytes: ...

    def erase_sector(self, address: int) -> bool: ...

    def program(self, address: int, data: bytes) -> None: ...


class DfuseDevice:
    """Core bootloader DFU state; memory is chosen by address (0x08xxxxxx internal, 0x00xxxxxx SPI)."""

    def __init__(self, internal: Flash, external: Flash, *, poll: bool = True) -> None:
        self.poll = poll  # False: announce bwPollTimeout 0 (a test double of a faster Core)
        self.flash = {"internal": internal, "external": external}
        self.state: int = State.IDLE
        self.status: int = Status.OK
        self.pointer = 0
        self._pending: tuple[int, bytes] | None = None  # (wBlockNum, payload) awaiting GETSTATUS
        self._poll_ms = 0
        self.reset_requested = False
        self.commands: list[tuple[str, int]] = []  # (kind, address) log: "erase", "set", "write"

    @staticmethod
    def memory_of(address: int) -> str | None:
        top = address & 0xFC000000
        return "internal" if top == 0x08000000 else "external" if top == 0 else None

    def take_poll_ms(self) -> int:
        """The busy time the Core announced in the last GETSTATUS (0 if none); clears it."""
        ms, self._poll_ms = self._poll_ms, 0
        return ms

    def handle(self, req: ControlRequest) -> bytes | None:
        """Answer one class request: IN data, b"" for an accepted OUT request, STALL (None)."""
        if req.bmRequestType == OUT:
            return self._out(req)
        if req.bmRequestType == IN:
            return self._in(req)
        return STALL

    # -- OUT -------------------------------------------------------------------
    def _out(self, req: ControlRequest) -> bytes | None:
        if req.bRequest == Req.DNLOAD:
            if self.state not in (State.IDLE, State.DNLOAD_IDLE) or len(req.data) > MAX_TRANSFER:
                return STALL
            if not req.data:
                self.state = State.MANIFEST_SYNC  # leave
                return b""
            if req.wValue == 1:
                return STALL
            self._pending = (req.wValue, bytes(req.data))
            self.state = State.DNLOAD_SYNC
            return b""
        if req.bRequest == Req.CLRSTATUS:
            if self.state == State.ERROR:
                self.state, self.status = State.IDLE, Status.OK
            else:  # the Core's quirk: CLRSTATUS anywhere else *enters* dfuERROR
                self.state, self.status = State.ERROR, Status.errUNKNOWN
            return b""
        if req.bRequest == Req.ABORT:
            if self.state in (State.IDLE, State.DNLOAD_SYNC, State.DNLOAD_IDLE, State.MANIFEST_SYNC, State.UPLOAD_IDLE):
                self.state, self._pending = State.IDLE, None
            return b""
        return STALL  # DETACH and anything unknown

    # -- IN --------------------------------------------------------------------
    def _in(self, req: ControlRequest) -> bytes | None:
        if req.bRequest == Req.GETSTATUS:
            return self._getstatus()
        if req.bRequest == Req.GETSTATE:
            return bytes([self.state & 0xFF])
        if req.bRequest == Req.UPLOAD:
            if self.state not in (State.IDLE, State.UPLOAD_IDLE) or req.length > MAX_TRANSFER:
                return STALL
            if req.wValue == 0:
                self.state = State.UPLOAD_IDLE
                return GET_COMMANDS[: req.length]
            if req.wValue == 1:
                self.state = BUGGY_STATE
                return STALL
            self.state = State.UPLOAD_IDLE
            return self._read(self.pointer + (req.wValue - 2) * MAX_TRANSFER, req.length)
        return STALL

    def _getstatus(self) -> bytes:
        poll = 0
        if self.state == State.DNLOAD_SYNC and self._pending is not None:
            block, payload = self._pending
            self._pending = None
            mem = self.memory_of(self.pointer) or "internal"
            is_erase = block == 0 and len(payload) == 5 and payload[0] == CMD_ERASE
            poll = POLL_MS[mem][0 if is_erase else 1] if self.poll else 0
            self._execute(block, payload)
            self.state = State.DNBUSY
        elif self.state in (State.DNBUSY, State.DNLOAD_SYNC):
            self.state = State.DNLOAD_IDLE
        elif self.state == State.MANIFEST_SYNC:
            # Core quirk: answers dfuDNLOAD-IDLE, then resets about 500 ms later.
            reply = encode_status(DfuStatus(self.status, 0, State.DNLOAD_IDLE))
            self.state, self.reset_requested = State.MANIFEST_WAIT_RESET, True
            return reply
        self._poll_ms = poll
        return encode_status(DfuStatus(self.status, poll, self.state & 0xFF))

    # -- flash work ------------------------------------------------------------
    def _execute(self, block: int, payload: bytes) -> None:
        if block == 0:
            if len(payload) != 5:
                return  # mass erase, read unprotect, anything else: ignored, still "OK"
            (address,) = struct.unpack_from("<I", payload, 1)
            if payload[0] == CMD_SET_ADDRESS:
                self.pointer = address
                self.commands.append(("set", address))
            elif payload[0] == CMD_ERASE:
                self.pointer = address  # the Core's Erase moves the pointer
                self.commands.append(("erase", address))
                f = self._flash_at(address, 1)
                if f is not None:
                    f.erase_sector(address)
            return
        address = self.pointer + (block - 2) * MAX_TRANSFER
        self.commands.append(("write", address))
        mem = self.memory_of(address)
        if mem == "internal" and len(payload) % 4:
            payload += b"\xff" * (-len(payload) % 4)  # 32-bit programming pads the last word
        f = self._flash_at(address, len(payload))
        if f is not None:
            f.program(address, payload)

    def _flash_at(self, address: int, length: int) -> Flash | None:
        mem = self.memory_of(address)
        f = self.flash[mem] if mem else None
        if f is None or not (f.base <= address and address + length <= f.base + f.size):
            return None  # silently dropped, as the Core does
        return f

    def _read(self, address: int, length: int) -> bytes:
        """UPLOAD does not stop at the end of a memory: SPI addresses wrap, internal reads 0xFF."""
        mem = self.memory_of(address)
        if mem is None:
            return b"\xff" * length
        f = self.flash[mem]
        if mem == "external":
            out = b""
            while len(out) < length:
                a = (address + len(out)) % f.size
                out += f.read(a, min(length - len(out), f.size - a))
            return out
        inside = max(0, min(length, f.base + f.size - address))
        return (f.read(address, inside) if inside else b"") + b"\xff" * (length - inside)
