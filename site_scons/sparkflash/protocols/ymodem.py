"""YMODEM batch (1K blocks, CRC-16) as two sans-I/O state machines: Sender and Receiver.

Both roles live here (h11 style) so the host's sender and the virtual Core's receiver share
one framing. Drive either machine the same way:

    machine.receive_data(bytes)      bytes that arrived from the peer
    machine.next_event()             one event, or NEED_DATA
    machine.data_to_send()           bytes to write to the peer now
    machine.timeout_s                how long to wait for input before machine.on_timeout()

Nothing here reads a clock or a port: the driver owns time (`transports.drive`). Peer
quirks handled (shared/specs/ymodem.md §5-7): the end-of-batch header waits for the
receiver's 'C' (lrzsz rb purges its input before sending it), ACK timeouts are long because
a device erases flash before ACKing, duplicate blocks are re-ACKed, CAN CAN ends the session
from either side, and lrzsz's non-zero bytes at the end of block 0 are tolerated.
A failed session raises a ProtocolError subclass (or TransportTimeout) from next_event() or
on_timeout(); any cancel bytes are queued in data_to_send() first.
"""

from __future__ import annotations

import binascii
import re
from collections import deque
from dataclasses import dataclass
from typing import NoReturn

from sparkflash.errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    TransportTimeout,
)

__all__ = [
    "ACK",
    "CAN",
    "CANCEL",
    "CRC_START",
    "END_OF_BATCH",
    "EOT",
    "MAX_NAME",
    "NAK",
    "NEED_DATA",
    "SOH",
    "STX",
    "SUB",
    "BatchEnd",
    "FileData",
    "FileEnd",
    "FileHeader",
    "Finished",
    "NeedData",
    "Progress",
    "Receiver",
    "ReceiverTimeouts",
    "Sender",
    "SenderTimeouts",
    "crc16",
    "encode_block",
    "encode_header",
    "header_wait_s",
    "padded_size",
    "parse_header",
]

SOH, STX, EOT, ACK, NAK, CAN = 0x01, 0x02, 0x04, 0x06, 0x15, 0x18
CRC_START = 0x43  # 'C': "ready, send CRC-16 blocks"
SUB = 0x1A  # padding of the last data block
CANCEL = bytes([CAN]) * 8  # two are enough for ST receivers; more for terminals and lrzsz
RETRY_MAX = 10  # lrzsz RETRYMAX: tries per block
_PAYLOAD = {SOH: 128, STX: 1024}
_LEN_RE = re.compile(rb"\d+")
# Spark receivers copy the name into a 256-byte buffer and then write its NUL one past
# the end for a 256+ character name (FILE_NAME_LENGTH 256): send at most 255.
MAX_NAME = 255


def header_wait_s(size: int, sector_size: int, erase_max_s: float, base: float = 10.0) -> float:
    """How long the header ACK may take: stock receivers erase every sector of the announced
    size first (FLASH_Begin), so allow the chip's worst-case erase time for each, plus margin."""
    sectors = -(-size // sector_size) if sector_size > 0 else 0
    return base + 1.25 * sectors * erase_max_s


def padded_size(size: int, block_size: int = 1024) -> int:
    """Bytes a receiver that stores whole blocks writes for `size` (our sender's blocking:
    1K blocks until at most 896 bytes remain, then 128-byte blocks, padded with 0x1A)."""
    full, rest = divmod(size, 1024) if block_size == 1024 else (0, size)
    if block_size == 1024 and rest > 896:
        return (full + 1) * 1024
    return full * 1024 + -(-rest // 128) * 128


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (poly 0x1021, init 0): check value 0x31C3 for b'123456789'."""
    return binascii.crc_hqx(data, 0)


def encode_block(seq: int, payload: bytes, *, crc: bool = True) -> bytes:
    """mark seq ~seq payload check; payload must be exactly 128 or 1024 bytes."""
    if len(payload) not in (128, 1024):
        raise LocalProtocolError(f"YMODEM block payload must be 128 or 1024 bytes, not {len(payload)}")
    seq &= 0xFF
    head = bytes([SOH if len(payload) == 128 else STX, seq, 0xFF - seq])
    check = crc16(payload).to_bytes(2, "big") if crc else bytes([sum(payload) & 0xFF])
    return head + payload + check


def encode_header(name: str, size: int, *, crc: bool = True) -> bytes:
    """Block 0: `name NUL size SP` zero-padded. The space matters: ST parses the size up to it."""
    text = name.encode("ascii", "replace").split(b"/")[-1][:MAX_NAME] + b"\0" + str(size).encode() + b" "
    if len(text) > 1024:
        raise LocalProtocolError(f"YMODEM file name too long ({len(name)} characters)")
    return encode_block(0, text.ljust(128 if len(text) <= 128 else 1024, b"\0"), crc=crc)


END_OF_BATCH = encode_block(0, bytes(128))


def parse_header(payload: bytes) -> tuple[str, int | None]:
    """(name, size or None) from block 0; mtime/mode/serial fields and trailing junk ignored."""
    name, _, rest = payload.partition(b"\0")
    m = _LEN_RE.match(rest)
    return name.decode("ascii", "replace"), (int(m.group()) if m else None)


# -- events -----------------------------------------------------------------------------
@dataclass(frozen=True)
class NeedData:
    """Nothing to report until more bytes arrive or the timeout passes."""


NEED_DATA = NeedData()


@dataclass(frozen=True)
class Progress:
    """Sender: the receiver ACKed data up to `done` of `total` bytes."""

    done: int
    total: int


@dataclass(frozen=True)
class Finished:
    """Sender: the end-of-batch header was ACKed; the transfer is complete."""


@dataclass(frozen=True)
class FileHeader:
    """Receiver: a file header arrived; call accept() or reject() before anything else."""

    name: str
    size: int | None


@dataclass(frozen=True)
class FileData:
    """Receiver: the next data bytes (padding beyond the header's size already removed)."""

    offset: int
    data: bytes


@dataclass(frozen=True)
class FileEnd:
    """Receiver: EOT after a file; `received` bytes in total."""

    name: str
    size: int | None
    received: int


@dataclass(frozen=True)
class BatchEnd:
    """Receiver: the empty header arrived and was ACKed; the session is over."""


Event = NeedData | Progress | Finished | FileHeader | FileData | FileEnd | BatchEnd


# -- sender -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SenderTimeouts:
    """Seconds to wait in each sender state; long on purpose (ymodem.md §7)."""

    start: float = 60.0  # the receiver's first 'C'
    header_ack: float = 10.0  # the device erases its destination before ACKing the header
    after_header: float = 2.0  # the 'C' that follows the header ACK (optional for us)
    block_ack: float = 10.0  # a quick resend after a lost ACK makes ST receivers NAK forever
    eot_ack: float = 10.0
    end_c: float = 6.0  # ST receivers send it only after their own 5 s timeout
    end_ack: float = 10.0  # newer Device OS validates the image before ACKing


class _Machine:
    """Byte buffers, the CAN CAN detector and the event queue both roles share."""

    def __init__(self) -> None:
        self._in = bytearray()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._cans = 0
        self.state = "start"
        self.retries = 0  # resends/NAKs over the whole session (for reports)

    @property
    def done(self) -> bool:
        return self.state == "done"

    def receive_data(self, data: bytes) -> None:
        self._in += data

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def take_rest(self) -> bytes:
        """Input not consumed by the session (e.g. text the peer printed after the last ACK)."""
        rest = bytes(self._in)
        self._in.clear()
        return rest

    def cancel(self) -> None:
        """Abort from our side: CAN x 8 replaces anything queued (call before data_to_send)."""
        if self.state not in ("done", "failed"):
            self._out[:] = CANCEL
            self.state = "failed"

    def _fail(self, err: ProtocolError | TransportTimeout, *, send_cancel: bool = True) -> NoReturn:
        if send_cancel:
            self._out += CANCEL
        self.state = "failed"
        raise err

    def _check_alive(self) -> None:
        if self.state == "failed":
            raise LocalProtocolError("YMODEM session already failed")

    def _is_cancel(self, b: int) -> bool:
        """True on the second consecutive CAN."""
        self._cans = self._cans + 1 if b == CAN else 0
        return self._cans >= 2


class Sender(_Machine):
    """Sends one file, then the end-of-batch header (one file per session: ST receivers
    write every file of a batch to the same place)."""

    def __init__(
        self,
        name: str,
        data: bytes,
        *,
        block_size: int = 1024,
        wait_for_c: bool = True,
        timeouts: SenderTimeouts = SenderTimeouts(),
        retry_max: int = RETRY_MAX,
        stock_receiver: bool = False,
    ) -> None:
        super().__init__()
        # The peer is a Spark stock receiver (it erases before the header ACK, NAKs
        # duplicates, says 'C' on its own timeouts): a 'C' awaiting the header ACK is a lost ACK.
        self.stock_receiver = stock_receiver
        if block_size not in (128, 1024):
            raise LocalProtocolError(f"YMODEM block size must be 128 or 1024, not {block_size}")
        if not data:  # a Spark receiver reports an empty file as a failed transfer
            raise LocalProtocolError(f"YMODEM: refusing to send the empty file {name!r}")
        self.name, self.data, self.block_size = name, data, block_size
        self.timeouts, self.retry_max = timeouts, retry_max
        self._crc = True
        self._offset = 0  # ACKed bytes
        self._seq = 1
        self._block = b""  # the frame awaiting ACK
        self._tries = 0
        self._chunk_len = 0
        self._timed_out = False  # the frame awaiting ACK was resent after a silence (or 'C')
        self.duplicates = 0  # resent frames the receiver NAKed because it already had them
        if not wait_for_c:  # a Spark receiver printed its prompt: it will not send 'C' for 5 s
            self._send_header()

    @property
    def timeout_s(self) -> float:
        t = self.timeouts
        return {"start": t.start, "header_ack": t.header_ack, "after_header": t.after_header,
                "block_ack": t.block_ack, "eot_ack": t.eot_ack, "end_c": t.end_c,
                "end_ack": t.end_ack}.get(self.state, t.start)

    def next_event(self) -> Event:
        self._check_alive()
        while not self._events and self._in and self.state != "done":
            b = self._in[0]
            del self._in[0]
            self._on_byte(b)
        return self._events.popleft() if self._events else NEED_DATA

    def on_timeout(self) -> None:
        self._check_alive()
        s = self.state
        if s == "start":
            self._fail(TransportTimeout(f"YMODEM: no 'C' from the receiver within {self.timeouts.start:g} s"))
        elif s == "after_header":
            self._send_data_block()  # the 'C' after the header ACK is optional
        elif s == "end_c":
            self._emit(END_OF_BATCH, "end_ack")  # an ST receiver is already waiting for it
        elif s != "done":
            self._resend(f"no answer within {self.timeout_s:g} s")
            self._timed_out = True

    # -- internals ------------------------------------------------------------------------
    def _where(self) -> str:
        if self.state in ("header_ack", "start"):
            return "at the file header"
        if self.state in ("block_ack", "after_header"):
            return f"at block {self._seq} (byte {self._offset} of {len(self.data)})"
        return "at the end of the transfer"

    def _emit(self, frame: bytes, state: str) -> None:
        self._block, self.state, self._tries, self._timed_out = frame, state, 0, False
        self._out += frame

    def _resend(self, why: str) -> None:
        self._timed_out = False
        self._tries += 1
        self.retries += 1
        if self._tries >= self.retry_max:
            self._fail(RemoteProtocolError(f"YMODEM: gave up {self._where()} after {self._tries} tries ({why})"))
        self._in.clear()  # stop-and-wait: anything still buffered answers an older frame
        self._out += self._block

    def _send_header(self) -> None:
        self._emit(encode_header(self.name, len(self.data), crc=self._crc), "header_ack")

    def _send_data_block(self) -> None:
        rest = len(self.data) - self._offset
        if rest <= 0:
            self._emit(bytes([EOT]), "eot_ack")
            return
        # Like sb -k: 1K blocks until at most 896 bytes remain, then 128-byte blocks.
        size = 1024 if self.block_size == 1024 and rest > 896 else 128
        chunk = self.data[self._offset : self._offset + size]
        self._emit(encode_block(self._seq, chunk.ljust(size, bytes([SUB])), crc=self._crc), "block_ack")
        self._chunk_len = len(chunk)

    def _on_byte(self, b: int) -> None:
        if self._is_cancel(b):
            self._fail(RemoteProtocolError(f"YMODEM: receiver cancelled (CAN CAN) {self._where()}"), send_cancel=False)
        s = self.state
        if s == "start":
            if b in (CRC_START, NAK):
                self._crc = b == CRC_START  # NAK = plain checksum mode
                self._send_header()
        elif s == "header_ack":
            if b == ACK or (b == NAK and self._timed_out):
                # A NAK of a header resent after a silence: the ACK was lost and a Spark
                # receiver NAKs the duplicate (it compares sequence numbers only).
                self.duplicates += b == NAK
                self.state = "after_header"
                self._events.append(Progress(0, len(self.data)))
                if b == NAK:
                    self._send_data_block()
            elif b == NAK:
                self._resend("header NAKed")
            elif b == CRC_START and self.stock_receiver:
                # A Spark receiver sends ACK 'C' for the header; a 'C' alone means the ACK
                # was lost (or the header was garbled): send it again; a NAK = it had it.
                self._resend("header ACK lost ('C' alone)")
                self._timed_out = True
        elif s == "after_header":
            if b == CRC_START:
                self._send_data_block()
        elif s == "block_ack":
            if b == ACK or (b == NAK and self._timed_out):
                # NAK of a block resent after a silence = the device has it (lost ACK):
                # move on; the final digest (where the device has one) proves the data.
                self.duplicates += b == NAK
                self._offset += self._chunk_len
                self._seq += 1
                self._events.append(Progress(self._offset, len(self.data)))
                self._send_data_block()
            elif b in (NAK, CRC_START):
                self._resend("block NAKed" if b == NAK else "receiver timed out ('C')")
                # A Spark receiver says 'C' when its 0.5 s wait for the next block passes,
                # which is also what a lost ACK looks like: a NAK of this resend = duplicate.
                self._timed_out = b == CRC_START
        elif s == "eot_ack":
            if b == ACK:
                self.state, self._tries = "end_c", 0
            elif b == NAK:  # a strict receiver NAKs the first EOT to confirm it
                self._resend("EOT NAKed")
        elif s == "end_c":
            if b in (CRC_START, NAK):
                self._emit(END_OF_BATCH if self._crc else encode_block(0, bytes(128), crc=False), "end_ack")
        elif s == "end_ack":
            if b == ACK:
                self.state = "done"
                self._events.append(Finished())
            elif b in (NAK, CRC_START):  # rb lost it (it purges input before its 'C') or NAKed it
                self._resend("end-of-batch header not taken")


# -- receiver ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ReceiverTimeouts:
    start: float = 3.0  # repeat 'C' this often until a sender starts
    block: float = 5.0  # per block once the session has begun (Device OS: 5 s)


class Receiver(_Machine):
    """Receives a batch. Events: FileHeader (then accept()/reject()), FileData, FileEnd,
    BatchEnd. ACKs are queued when an event is returned, so a handler that fails to store
    the data calls cancel() before the driver flushes data_to_send()."""

    def __init__(
        self,
        *,
        timeouts: ReceiverTimeouts = ReceiverTimeouts(),
        max_errors: int = 5,
        start_tries: int | None = None,
    ) -> None:
        super().__init__()
        self.timeouts, self.max_errors, self.start_tries = timeouts, max_errors, start_tries
        self._errors = 0
        self._starts = 1
        self._started = False  # a header has been seen
        self._file: FileHeader | None = None
        self._received = 0
        self._seq = 1
        self._out.append(CRC_START)
        self.state = "header"

    @property
    def timeout_s(self) -> float | None:
        if self.state == "accept":
            return None  # the owner decides; no peer timeout applies
        return self.timeouts.block if self._started else self.timeouts.start

    def accept(self) -> None:
        """Take the announced file: ACK the header and ask for data with 'C'."""
        if self.state != "accept":
            raise LocalProtocolError(f"YMODEM accept() in state {self.state}")
        self._out += bytes([ACK, CRC_START])
        self.state = "data"

    def reject(self) -> None:
        """Refuse the announced file (too big, bad range): CAN CAN, session over."""
        self.cancel()

    def next_event(self) -> Event:
        self._check_alive()
        while self.state in ("header", "data") and self._in:
            b = self._in[0]
            if b in _PAYLOAD:
                n = 3 + _PAYLOAD[b] + 2
                if len(self._in) < n:
                    return NEED_DATA
                frame = bytes(self._in[:n])
                del self._in[:n]
                self._cans = 0
                ev = self._on_block(frame)
            else:
                del self._in[0]
                ev = self._on_byte(b)
            if ev is not None:
                return ev
        return NEED_DATA

    def on_timeout(self) -> None:
        self._check_alive()
        if self.state not in ("header", "data"):
            return
        self._in.clear()  # a partial block is lost
        if not self._started:
            self._starts += 1
            if self.start_tries is not None and self._starts > self.start_tries:
                self._fail(TransportTimeout(f"YMODEM: no sender after {self.start_tries} 'C' prompts"))
            self._out.append(CRC_START)
            return
        self._error(f"no data within {self.timeouts.block:g} s")
        self._out.append(CRC_START if self.state == "header" else NAK)

    # -- internals ------------------------------------------------------------------------
    def _error(self, why: str) -> None:
        self._errors += 1
        self.retries += 1
        if self._errors > self.max_errors:
            self._fail(RemoteProtocolError(f"YMODEM: too many errors at byte {self._received} ({why})"))

    def _on_byte(self, b: int) -> Event | None:
        if self._is_cancel(b):
            self._fail(RemoteProtocolError(f"YMODEM: sender cancelled (CAN CAN) at byte {self._received}"),
                       send_cancel=False)
        if b != EOT:
            return None  # noise (ZRQINIT, stray spaces): ignore and resync on the next mark
        f = self._file
        if self.state == "data" and f is not None and f.size is not None and self._received < f.size:
            # Not an end: a block's mark corrupted into EOT (lrzsz likewise refuses an EOT that
            # bytes follow). NAK it; a sender that really ended resends EOT until we give up.
            self._in.clear()
            self._error(f"EOT after {self._received} of {f.size} announced bytes")
            self._out.append(NAK)
            return None
        self._out.append(ACK)
        if self.state != "data":
            return None  # a repeated EOT: our ACK was lost
        assert f is not None
        self._out.append(CRC_START)
        self.state = "header"
        return FileEnd(f.name, f.size, self._received)

    def _on_block(self, frame: bytes) -> Event | None:
        seq, payload = frame[1], frame[3:-2]
        if frame[2] != 0xFF - seq or crc16(payload) != int.from_bytes(frame[-2:], "big"):
            self._in.clear()  # resync: the sender resends the whole block after our NAK
            self._error(f"bad block (seq {seq}, {'bad complement' if frame[2] != 0xFF - seq else 'CRC error'})")
            self._out.append(NAK)
            return None
        if self.state == "header":
            return self._on_header(seq, payload)
        if seq == 0 and self._received == 0:  # the header again: our ACK was lost
            self._out += bytes([ACK, CRC_START])
            return None
        if seq == (self._seq - 1) & 0xFF:  # duplicate: our ACK was lost
            self._out.append(ACK)
            return None
        if seq != self._seq & 0xFF:
            self._fail(RemoteProtocolError(f"YMODEM: block {seq} out of sequence, expected {self._seq & 0xFF}"))
        f = self._file
        assert f is not None
        data = payload if f.size is None else payload[: max(0, f.size - self._received)]
        offset = self._received
        self._received += len(data)
        self._seq += 1
        self._errors = 0
        self._out.append(ACK)
        return FileData(offset, data)

    def _on_header(self, seq: int, payload: bytes) -> Event | None:
        if seq != 0:
            late = self._started and seq == (self._seq - 1) & 0xFF  # the last block again: our ACK was lost
            self._out.append(ACK if late else NAK)
            return None
        self._errors = 0
        if payload[0] == 0:  # end of batch (lrzsz leaves junk in bytes 126-127: look only here)
            self._out.append(ACK)
            self.state = "done"
            return BatchEnd()
        self._started = True
        name, size = parse_header(payload)
        self._file = FileHeader(name, size)
        self._received, self._seq = 0, 1
        self.state = "accept"
        return self._file
