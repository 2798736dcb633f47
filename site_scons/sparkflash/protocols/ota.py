"""OTA update messages and the server-side transfer machine (spark-cloud-protocol.md §6, §11).

Messages: UpdateBegin (12-byte payload), SaveBegin, Chunk (CRC-32 + optional index),
ChunkReceived, ChunkMissed, UpdateDone, UpdateAbort (the 4.00 ACK to a begin), plus our
Checksum extension (GET /x: CRC-32 and SHA-256 of an address range, docs/ota.md).

`OtaSender` runs one transfer: stop-and-wait with the safe rule for re-requested chunks
(a 0.3.x Core stores chunks in arrival order, so a duplicate silently shifts the image),
or fast OTA when the device's UpdateReady accepts it. Pure: messages and `now` in,
messages out; the driver owns sockets and the clock (`next_deadline`, `on_timeout`).

`pipeline` (fast OTA to Device OS only) sends every chunk and UpdateDone right behind
UpdateBegin instead of one round trip later: Device OS handles one message at a time
(UpdateBegin: ACK, erase, UpdateReady; only then does it read the next), so the chunks
are read after its UpdateReady and the erase overlaps their flight. If it refuses the
update, it ignores chunks that come while it is not updating ("got chunk when not
updating"): the sender fails with the refusal as it would have without them.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field

from sparkflash.errors import LocalProtocolError, RemoteProtocolError
from sparkflash.protocols import coap
from sparkflash.protocols.coap import ACK, CON, NON, Message, MessageIds

__all__ = [
    "DEST_FIRMWARE", "DEST_EXTERNAL", "FLAG_FAST", "MAX_CHUNK", "UPDATE_BEGIN_PAYLOAD",
    "crc32", "update_begin", "save_begin", "chunk", "update_done", "checksum_request",
    "update_ready", "chunk_received", "chunk_missed", "device_update_done", "checksum_reply",
    "empty_ack", "parse_update_begin", "parse_save_begin", "parse_chunk", "parse_chunk_missed",
    "parse_checksum_request", "parse_checksum_reply", "chunk_wire_size", "max_chunks",
    "SenderTiming", "OtaSender",
]

DEST_FIRMWARE, DEST_EXTERNAL = 0, 1
FLAG_FAST = 0x01
MAX_CHUNK = 512  # 594 fits a 0.3.x Core but not Device OS's bitmap in the same 640-byte buffer
UPDATE_BEGIN_PAYLOAD = 12
P_UPDATE, P_SAVE, P_CHUNK, P_CHECKSUM = b"u", b"s", b"c", b"x"


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _req(mid: int, token: bytes, code: int, path: bytes, *queries: bytes, payload: bytes = b"") -> Message:
    opts = ((coap.URI_PATH, path),) + tuple((coap.URI_QUERY, q) for q in queries)
    return Message(CON, code, mid, token, opts, payload)


# -- server -> device ------------------------------------------------------------------
def update_begin(mid: int, token: bytes, *, flags: int, chunk_size: int, file_size: int,
                 destination: int, address: int) -> Message:
    payload = (bytes([flags]) + chunk_size.to_bytes(2, "big") + file_size.to_bytes(4, "big")
               + bytes([destination]) + address.to_bytes(4, "big"))
    return _req(mid, token, coap.POST, P_UPDATE, payload=payload)


def save_begin(mid: int, token: bytes, *, address: int, file_size: int) -> Message:
    return _req(mid, token, coap.POST, P_SAVE, payload=address.to_bytes(4, "big") + file_size.to_bytes(4, "big"))


def chunk(mid: int, token: bytes, data: bytes, index: int | None = None) -> Message:
    queries = [crc32(data).to_bytes(4, "big")] + ([index.to_bytes(2, "big")] if index is not None else [])
    return _req(mid, token, coap.POST, P_CHUNK, *queries, payload=data)


def update_done(mid: int, token: bytes) -> Message:
    return _req(mid, token, coap.PUT, P_UPDATE)


def checksum_request(mid: int, token: bytes, address: int, size: int) -> Message:
    """Our extension: CON GET /x ?addr(u32) ?size(u32) -> ACK 2.05 crc32(u32) + sha256(32)."""
    return _req(mid, token, coap.GET, P_CHECKSUM, address.to_bytes(4, "big"), size.to_bytes(4, "big"))


def empty_ack(mid: int) -> Message:
    return Message(ACK, coap.EMPTY, mid)


# -- device -> server ------------------------------------------------------------------
def update_ready(mid: int, token: bytes, fast: bool | None) -> Message:
    """NON 2.04; Device OS appends 01 (fast accepted) or 00; 0.3.x sends no payload (None)."""
    return Message(NON, coap.CHANGED, mid, token, payload=b"" if fast is None else bytes([1 if fast else 0]))


def chunk_received(mid: int, token: bytes, ok: bool) -> Message:
    return Message(NON, coap.CHANGED if ok else coap.BAD_REQUEST, mid, token)


def chunk_missed(mid: int, indices: list[int]) -> Message:
    return Message(CON, coap.GET, mid, b"", ((coap.URI_PATH, P_CHUNK),), b"".join(i.to_bytes(2, "big") for i in indices))


def device_update_done(mid: int) -> Message:
    return Message(NON, coap.PUT, mid, b"", ((coap.URI_PATH, P_UPDATE),))


def checksum_reply(req: Message, crc: int, sha256: bytes) -> Message:
    return Message(ACK, coap.CONTENT, req.mid, req.token, payload=crc.to_bytes(4, "big") + sha256)


# -- parsers ---------------------------------------------------------------------------
def parse_update_begin(m: Message) -> tuple[int, int, int, int, int] | None:
    """(flags, chunk size, file size, destination, address), or None if the payload is absent."""
    p = m.payload
    if len(p) < UPDATE_BEGIN_PAYLOAD:
        return None
    return p[0], int.from_bytes(p[1:3], "big"), int.from_bytes(p[3:7], "big"), p[7], int.from_bytes(p[8:12], "big")


def parse_save_begin(m: Message) -> tuple[int, int]:
    if len(m.payload) < 8:
        raise RemoteProtocolError(f"SaveBegin payload of {len(m.payload)} bytes (expected 8)")
    return int.from_bytes(m.payload[0:4], "big"), int.from_bytes(m.payload[4:8], "big")


def parse_chunk(m: Message) -> tuple[int, int | None, bytes]:
    """(crc, index or None, data)."""
    q = m.queries()
    if not q or len(q[0]) != 4:
        raise RemoteProtocolError(f"Chunk mid {m.mid}: no 4-byte CRC query")
    index = int.from_bytes(q[1], "big") if len(q) > 1 else None
    return int.from_bytes(q[0], "big"), index, m.payload


def parse_chunk_missed(m: Message) -> list[int]:
    p = m.payload
    return [int.from_bytes(p[i : i + 2], "big") for i in range(0, len(p) - 1, 2)]


def parse_checksum_request(m: Message) -> tuple[int, int]:
    q = m.queries()
    if len(q) != 2 or len(q[0]) != 4 or len(q[1]) != 4:
        raise RemoteProtocolError(f"Checksum request mid {m.mid}: expected two 4-byte queries")
    return int.from_bytes(q[0], "big"), int.from_bytes(q[1], "big")


def parse_checksum_reply(m: Message) -> tuple[int, str]:
    if m.code != coap.CONTENT or len(m.payload) != 36:
        raise RemoteProtocolError(f"Checksum reply {coap.code_str(m.code)} with {len(m.payload)} payload bytes "
                                  "(expected 2.05, 36)")
    return int.from_bytes(m.payload[:4], "big"), m.payload[4:].hex()


def chunk_wire_size(chunk_size: int, indexed: bool = True) -> int:
    """Ciphertext length N of a Chunk message with `chunk_size` data bytes."""
    plain = 4 + 1 + 2 + 5 + (3 if indexed else 0) + 1 + chunk_size
    return (plain // 16 + 1) * 16


def max_chunks(chunk_size: int, buffer: int = 640) -> int:
    """Chunks one transfer may have: Device OS keeps its bitmap in the same buffer (N + 18 + bitmap <= 640)."""
    room = buffer - chunk_wire_size(chunk_size) - 18
    if room <= 0:
        raise LocalProtocolError(f"chunk size {chunk_size} does not fit the device's {buffer}-byte buffer")
    return room * 8


@dataclass(frozen=True)
class SenderTiming:
    begin_s: float = 30.0  # UpdateReady comes after the erase: seconds for big files
    begin_tries: int = 3
    begin_ack_s: float = 5.0  # every device code ACKs a begin it understood at once, before erasing
    chunk_s: float = 20.0  # no answer at all to a chunk: give up (the driver resumes later)
    missed_resend_s: float = 5.0  # safe rule: resend an in-flight chunk only after this long
    done_s: float = 30.0
    resends_per_chunk: int = 8  # then the transfer fails with the device's reason


@dataclass
class OtaSender:
    """One UpdateBegin/SaveBegin ... UpdateDone transfer of `data` (server side)."""

    data: bytes
    ids: MessageIds
    chunk_size: int = MAX_CHUNK
    destination: int = DEST_FIRMWARE
    address: int = 0
    use_save_begin: bool = False
    offer_fast: bool = False
    pipeline: bool = False  # needs offer_fast: chunks go right behind UpdateBegin (Device OS, see above)
    timing: SenderTiming = field(default_factory=SenderTiming)
    state: str = "idle"  # idle begin sending done-wait done failed
    fast: bool = False
    error: str | None = None
    retries: int = 0
    acked: int = 0  # contiguous chunks the device confirmed (the resume point)
    next_deadline: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.chunk_size <= MAX_CHUNK:
            raise LocalProtocolError(f"chunk size {self.chunk_size} (must be 1..{MAX_CHUNK})")
        if not self.data:
            raise LocalProtocolError("empty transfer")
        if self.pipeline and (not self.offer_fast or self.use_save_begin):
            raise LocalProtocolError("a pipelined transfer is a fast-OTA UpdateBegin")
        self.count = -(-len(self.data) // self.chunk_size)
        if self.count >= 0xFFFF:
            raise LocalProtocolError(f"{self.count} chunks (at most 65534 per transfer)")
        self._ok: set[int] = set()
        self._begin: Message | None = None
        self._tries = 0
        self._inflight: tuple[int, bytes, float] | None = None  # (index, token, sent at)
        self._missed_at: float | None = None
        self._done_mid = -1
        self._tokens: dict[bytes, deque[int]] = {}
        self._resends: dict[int, int] = {}

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def chunk_bytes(self, i: int) -> bytes:
        """Chunk i, the last one zero-padded: its CRC covers the padding (core-firmware #238)."""
        return self.data[i * self.chunk_size : (i + 1) * self.chunk_size].ljust(self.chunk_size, b"\x00")

    def start(self, now: float) -> list[Message]:
        self.state, self._tries = "begin", 0
        return self._send_begin(now)

    def _send_begin(self, now: float) -> list[Message]:
        self._tries += 1
        mid, tok = self.ids.next_mid(), self.ids.next_token()
        if self.use_save_begin:
            self._begin = save_begin(mid, tok, address=self.address, file_size=len(self.data))
        else:
            self._begin = update_begin(mid, tok, flags=FLAG_FAST if self.offer_fast else 0, chunk_size=self.chunk_size,
                                       file_size=len(self.data), destination=self.destination, address=self.address)
        self._begin_acked = False
        self.next_deadline = now + min(self.timing.begin_ack_s, self.timing.begin_s)
        if not self.pipeline:
            return [self._begin]
        out = [self._begin, *self._send_all(now)]
        self.next_deadline = now + min(self.timing.begin_ack_s, self.timing.begin_s)  # _send_all moved it
        return out

    def _send_all(self, now: float) -> list[Message]:
        """Fast OTA's first pass: every chunk (indexed), then UpdateDone."""
        self.fast, out = True, []
        for i in range(self.count):
            msg = self._send_chunk(i, now)
            self._tokens.setdefault(msg.token, deque()).append(i)
            out.append(msg)
        self._inflight = None
        out.append(self._send_done(now))
        return out

    def _fail(self, why: str) -> list[Message]:
        self.state, self.error, self.next_deadline = "failed", why, None
        return []

    def _send_chunk(self, i: int, now: float) -> Message:
        tok = self.ids.next_token()
        self._inflight, self._missed_at = (i, tok, now), None
        self.next_deadline = now + self.timing.chunk_s
        return chunk(self.ids.next_mid(), tok, self.chunk_bytes(i), i if self.fast else None)

    def _send_done(self, now: float) -> Message:
        self._done_mid = self.ids.next_mid()
        if self.state != "begin":  # a pipelined transfer stays in "begin" until UpdateReady
            self.state = "done-wait"
        self.next_deadline = now + self.timing.done_s
        return update_done(self._done_mid, self.ids.next_token())

    def _advance_acked(self) -> None:
        while self.acked in self._ok:
            self.acked += 1

    def receive(self, m: Message, now: float) -> list[Message]:
        """Feed one device message; returns what to send."""
        out: list[Message] = []
        if m.type == CON and m.code == coap.GET and m.path == "c":  # ChunkMissed
            out.append(empty_ack(m.mid))
            return out + self._on_missed(parse_chunk_missed(m), now)
        if m.type == NON and m.code == coap.PUT and m.path == "u":  # device UpdateDone (fast OTA)
            if self.state != "failed":
                self._ok.update(range(self.count))
                self._advance_acked()
                self.state, self.next_deadline = "done", None
            return out
        if (self.state == "begin" and self._begin is not None and m.type == ACK and m.code == coap.EMPTY
                and m.mid == self._begin.mid):
            return self._on_begin_reply(m, now)
        if m.code == coap.EMPTY or self.state in ("idle", "done", "failed"):
            return out
        if self.state == "begin":  # UpdateReady precedes every chunk reply (pipelined: chunks are in flight)
            return self._on_begin_reply(m, now)
        if self.fast and m.type != ACK and self._tokens.get(m.token):  # first-pass 2.04s come as NON
            self._note_fast_reply(m)
            return out
        if self.state == "sending" and self._inflight is not None and m.token == self._inflight[1]:
            return self._on_chunk_reply(m, now)
        if self.state == "done-wait" and m.type == ACK and m.mid == self._done_mid:  # piggybacked: echoes our id
            if m.code == coap.CHANGED:
                self._ok.update(range(self.count))
                self._advance_acked()
                self.state, self.next_deadline = "done", None
            else:  # 4.00: chunks missing; a ChunkMissed list follows
                self.next_deadline = now + self.timing.done_s
        return out

    def _on_begin_reply(self, m: Message, now: float) -> list[Message]:
        assert self._begin is not None
        if m.type == ACK and m.mid == self._begin.mid and m.code == coap.EMPTY:
            self._begin_acked = True  # the erase runs now: allow its time for UpdateReady
            self.next_deadline = now + self.timing.begin_s
            return []
        if m.type == ACK and m.mid == self._begin.mid and m.code == coap.BAD_REQUEST:
            return self._fail("the device refused the update (UpdateAbort, 4.00)")
        if m.token != self._begin.token:
            return []
        if m.code != coap.CHANGED:
            return self._fail(f"the device answered the update request with {coap.code_str(m.code)}")
        fast = self.offer_fast and m.payload[:1] == b"\x01"
        if self.pipeline:  # chunks and UpdateDone are on their way already
            if not fast:
                return self._fail("the device declined fast OTA after the chunks were sent")
            self.state, self.next_deadline = "done-wait", now + self.timing.done_s
            return []
        self.fast = fast
        self.state = "sending"
        if not self.fast:
            return [self._send_chunk(0, now)]
        return self._send_all(now)

    def _on_chunk_reply(self, m: Message, now: float) -> list[Message]:
        assert self._inflight is not None
        i = self._inflight[0]
        if m.code == coap.CHANGED:
            self._ok.add(i)
            self._advance_acked()
            self._inflight = None
            return [self._send_done(now)] if i + 1 == self.count else [self._send_chunk(i + 1, now)]
        self.retries += 1  # 4.00: CRC mismatch on the device
        if self._over_cap(i, "answered 4.00 (CRC mismatch)"):
            return []
        return [self._send_chunk(i, now)]

    def _over_cap(self, i: int, why: str) -> bool:
        n = self._resends[i] = self._resends.get(i, 0) + 1
        if n <= self.timing.resends_per_chunk:
            return False
        self._fail(f"chunk {i} resent {n - 1} times and the device still {why}")
        return True

    def _note_fast_reply(self, m: Message) -> None:
        """Fast mode: a 2.04 for a first-pass chunk moves the resume point.

        Tokens repeat after 255 chunks; the device answers in order, so a reply belongs to
        the oldest unanswered chunk with that token (a wrong guess is caught by the checksum).
        """
        i = self._tokens[m.token].popleft()
        if m.code == coap.CHANGED:
            self._ok.add(i)
            self._advance_acked()

    def _on_missed(self, indices: list[int], now: float) -> list[Message]:
        bad = [k for k in indices if k >= self.count]
        if bad:
            return self._fail(f"the device asked for chunk {bad[0]} of a {self.count}-chunk transfer")
        if self.fast or self.state == "done-wait":
            self.retries += len(indices)
            self.next_deadline = now + self.timing.done_s
            for k in indices:
                self._ok.discard(k)
                if self._over_cap(k, "reports it missing (ChunkMissed)"):
                    return []
            self.acked = min([self.acked] + indices)
            return [chunk(self.ids.next_mid(), self.ids.next_token(), self.chunk_bytes(k), k) for k in indices]
        if self.state != "sending" or self._inflight is None or not indices:
            return []
        k, (i, _tok, sent) = indices[0], self._inflight
        if k < i:  # a rollback: the device holds exactly k chunks
            self.retries += 1
            if self._over_cap(k, "rolls back to it (flash write failed)"):
                return []
            self.acked = min(self.acked, k)
            self._ok = {j for j in self._ok if j < k}
            return [self._send_chunk(k, now)]
        if k == i:  # maybe just the device's 3-s timer while chunk i is in flight: resend only if it stays unanswered
            if self._missed_at is not None and now - sent >= self.timing.missed_resend_s:
                self.retries += 1
                return [self._send_chunk(i, now)]
            self._missed_at = now
        return []

    def on_timeout(self, now: float) -> list[Message]:
        if self.next_deadline is None or now < self.next_deadline:
            return []
        if self.state == "begin":
            if not self._begin_acked and self.use_save_begin:
                return self._fail("the device did not even acknowledge SaveBegin: its firmware ignores it (stock "
                                  "0.3.x); only flasher_additions-based firmware stores files over the air")
            if self.pipeline:  # another UpdateBegin would land behind the chunks and UpdateDone already sent
                return self._fail("no UpdateReady to the (pipelined) fast-OTA request")
            if self._tries >= self.timing.begin_tries:
                return self._fail(f"no UpdateReady after {self._tries} requests")
            return self._send_begin(now)
        if self.state == "sending" and not self.fast:
            i = self._inflight[0] if self._inflight else self.acked
            return self._fail(f"no answer to chunk {i} within {self.timing.chunk_s:g} s")
        return self._fail("no answer to UpdateDone")
