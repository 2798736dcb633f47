"""Cloud protocol layers fed hostile input in both directions: CoAP, AES framing, handshake, OTA.

Each layer's untrusted input: CoAP decode (any bytes), the framing Opener (junk, valid
frames, and valid frames with one change), both handshake steps (any block, and real blocks
with one byte changed), the device's OtaReceiver (any server message sequence, on the
virtual Core's own FlashStore) and the server's OtaSender (any device replies). Only
SparkflashError may escape; the device never touches internal flash or the key sectors;
every loop has a hard cap.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from sparkflash.errors import RemoteProtocolError, SparkflashError
from sparkflash.protocols import cloud_handshake as hs
from sparkflash.protocols import coap, ota
from sparkflash.protocols.cloud_framing import BLOCK, DEVICE_BUFFER, Opener, Sealer
from sparkflash.protocols.coap import Message, MessageIds
from sparkflash.protocols.ota_receiver import DeviceTiming, OtaReceiver
from sparkflash.virtual.cloud_client import FlashStore
from sparkflash.virtual.nor_flash import NorFlash

pytestmark = pytest.mark.fuzz

KEY, IV = bytes(range(16)), bytes(range(16, 32))


# -- CoAP --------------------------------------------------------------------------------
def _options() -> st.SearchStrategy[tuple[tuple[int, bytes], ...]]:
    nums = st.sampled_from([coap.URI_PATH, coap.URI_QUERY, coap.MAX_AGE, 1, 12, 13, 268, 269, 65804]) | \
        st.integers(0, 65804)  # the largest delta the format holds (encode() cannot write more)
    return st.lists(st.tuples(nums, st.binary(max_size=20) | st.binary(min_size=260, max_size=300)), max_size=5).map(
        lambda o: tuple(sorted(o, key=lambda x: x[0])))


messages = st.builds(Message, st.integers(0, 3), st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=8),
                     _options(), st.binary(max_size=40))


@st.composite
def coap_bytes(draw: st.DrawFn) -> bytes:
    """Any bytes, or an encoded message with one change (gets past the 4-byte header)."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=80))
    raw = bytearray(coap.encode(draw(messages)))
    op = draw(st.sampled_from(["flip", "cut", "append", "none"]))
    i = draw(st.integers(0, len(raw) - 1))
    if op == "flip":
        raw[i] ^= draw(st.integers(1, 255))
    elif op == "cut":
        del raw[i:]
    elif op == "append":
        raw += draw(st.binary(min_size=1, max_size=4))
    return bytes(raw)


@given(coap_bytes())
def test_coap_decode_takes_any_bytes(raw: bytes) -> None:
    try:
        m = coap.decode(raw)
    except RemoteProtocolError:
        return
    assert m.path == m.path and isinstance(m.queries(), list)
    assert coap.decode(coap.encode(m)) == m  # what we parsed, we can say again


@given(messages)
def test_coap_round_trip(m: Message) -> None:
    assert coap.decode(coap.encode(m)) == m


# -- AES framing -------------------------------------------------------------------------
@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bytes, int]:
    """(plaintexts, the sealed stream with at most one change, offset of the change or -1)."""
    sealer = Sealer(KEY, IV)
    plains = draw(st.lists(st.binary(max_size=100), max_size=5))
    stream = bytearray(b"".join(sealer.seal(p) for p in plains))
    at = -1
    op = draw(st.sampled_from(["none", "flip", "cut", "junk", "length"]))
    if stream and op != "none":
        at = draw(st.integers(0, len(stream) - 1))
        if op == "flip":
            stream[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del stream[at:]
        elif op == "junk":
            stream[at:at] = draw(st.binary(min_size=1, max_size=40))
        else:
            stream[at:at] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    elif op != "none":
        stream += draw(st.binary(min_size=1, max_size=60))
        at = 0
    return plains, bytes(stream), at


@given(streams(), st.lists(st.integers(1, 200), max_size=6), st.sampled_from([DEVICE_BUFFER, 0xFFFF]))
def test_opener_takes_any_stream(case: tuple[list[bytes], bytes, int], cuts: list[int], max_len: int) -> None:
    plains, stream, at = case
    opener = Opener(KEY, IV, max_len=max_len)
    got: list[bytes] = []
    pieces, pos = [], 0
    for c in cuts:
        pieces.append(stream[pos : pos + c])
        pos += c
    pieces.append(stream[pos:])
    try:
        for piece in pieces:
            opener.receive_data(piece)
            for _ in range(len(stream) // BLOCK + 2):
                pt = opener.next_message()
                if pt is None:
                    break
                got.append(pt)
            else:
                raise AssertionError("Opener.next_message() returned more messages than the stream holds")
    except RemoteProtocolError:
        assert at >= 0 or max_len < 0xFFFF, "an unchanged stream was refused"
    # frames wholly before the change arrive intact (CBC has no MAC: later ones may not)
    ends, end = [], 0
    for p in plains:
        end += 2 + (len(p) // BLOCK + 1) * BLOCK
        ends.append(end)
    intact = [p for p, e in zip(plains, ends, strict=False) if at < 0 or e <= at]
    if max_len == 0xFFFF:
        assert got[: len(intact)] == intact
    if at < 0 and max_len == 0xFFFF:
        assert got == plains


# -- handshake ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (rsa.generate_private_key(public_exponent=65537, key_size=2048),
            rsa.generate_private_key(public_exponent=65537, key_size=1024))


def _changed(block: bytes, i: int, mask: int, junk: bytes | None) -> bytes:
    if junk is not None:
        return junk
    b = bytearray(block)
    b[i % len(b)] ^= mask
    return bytes(b)


def test_handshake_steps_take_any_block(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    server, device = keys
    nonce, dev_id = os.urandom(hs.NONCE_LEN), os.urandom(hs.ID_LEN)
    hello = hs.device_hello(server.public_key(), nonce, dev_id, device)
    reply = hs.server_reply(server, device.public_key(), os.urandom(hs.SESSION_LEN))
    junk = st.none() | st.binary(max_size=400) | st.binary(min_size=256, max_size=256) | \
        st.binary(min_size=384, max_size=384)

    @given(st.integers(0, 400), st.integers(1, 255), junk, st.booleans())
    def run(i: int, mask: int, raw: bytes | None, server_side: bool) -> None:
        try:
            if server_side:
                got = hs.open_device_hello(server, nonce, _changed(hello, i, mask, raw))
                # a changed block that still opens must carry our nonce (checked inside) and 12 id bytes
                assert len(got.device_id) == hs.ID_LEN
            else:
                session = hs.open_server_reply(device, server.public_key(), _changed(reply, i, mask, raw))
                assert len(session.material) == hs.SESSION_LEN
                raise AssertionError("a changed server reply passed the signature check")
        except RemoteProtocolError:
            pass

    run()


# -- OTA, device side ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def flash() -> Iterator[tuple[FlashStore, NorFlash, NorFlash]]:
    with tempfile.TemporaryDirectory() as tmp:
        internal = NorFlash(Path(tmp) / "int.bin", 0x08000000, 0x20000, 0x400, protected=((0x08000000, 0x08005000),))
        external = NorFlash(Path(tmp) / "ext.bin", 0, 0x200000, 0x1000, protected=((0x2000, 0x3000),))
        internal.program(0x08000000, os.urandom(0x20000))
        external.program(0, os.urandom(0x4000))
        try:
            yield FlashStore(internal, external), internal, external
        finally:
            internal.close()
            external.close()


sizes = st.sampled_from([0, 1, 511, 512, 513, 0x1B000, 0x20000, 0x20001, 0xFFFFFFFF]) | st.integers(0, 0x300000)
where = st.sampled_from([0, 0x1000, 0x2000, 0x60000, 0x80000, 0x1FF000, 0x200000, 0x08005000]) | st.integers(0, 2**32 - 1)
chunk_sizes = st.sampled_from([0, 1, 16, 512, 0xFFFF]) | st.integers(0, 0xFFFF)
tokens = st.binary(min_size=0, max_size=2)


def _chunk(mid: int, token: bytes, data: bytes, index: int | None, good_crc: bool) -> Message:
    m = ota.chunk(mid, token, data, index)
    if good_crc:
        return m
    opts = tuple((n, bytes(4) if i == 1 else v) for i, (n, v) in enumerate(m.options))
    return Message(m.type, m.code, m.mid, m.token, opts, m.payload)


server_messages = st.one_of(
    st.builds(lambda mid, tok, f, cs, size, dest, addr: ota.update_begin(
        mid, tok, flags=f, chunk_size=cs, file_size=size & 0xFFFFFFFF, destination=dest, address=addr & 0xFFFFFFFF),
        st.integers(0, 0xFFFF), tokens, st.integers(0, 255), chunk_sizes, sizes, st.integers(0, 255), where),
    st.builds(lambda mid, tok, addr, size: ota.save_begin(mid, tok, address=addr & 0xFFFFFFFF, file_size=size & 0xFFFFFFFF),
              st.integers(0, 0xFFFF), tokens, where, sizes),
    st.builds(_chunk, st.integers(0, 0xFFFF), tokens, st.binary(max_size=600) | st.binary(min_size=512, max_size=512),
              st.none() | st.integers(0, 0xFFFF), st.booleans()),
    st.builds(ota.update_done, st.integers(0, 0xFFFF), tokens),
    messages.map(lambda m: Message(m.type, m.code, m.mid, m.token, ((coap.URI_PATH, b"u"),) + m.options, m.payload)),
    messages.map(lambda m: Message(m.type, m.code, m.mid, m.token, ((coap.URI_PATH, b"c"),) + m.options, m.payload)),
    messages,
)
device_script = st.lists(st.one_of(st.tuples(st.just("msg"), server_messages),
                                   st.tuples(st.just("wait"), st.floats(0, 40))), max_size=25)


def test_device_takes_any_server_messages(flash: tuple[FlashStore, NorFlash, NorFlash]) -> None:
    store, internal, external = flash
    # Over the air the device writes only external flash. (Like the real firmware it protects
    # no external sector, keys included: the server refuses those regions before sending.)
    protected = {"internal flash": internal.read(0x08000000, 0x20000)}

    @given(st.sampled_from(["os", "ccl"]), device_script)
    def run(dialect: str, script: list[tuple[str, object]]) -> None:
        rx = OtaReceiver(store, MessageIds(0), dialect=dialect, timing=DeviceTiming())
        now = 0.0
        for kind, arg in script:
            try:
                if kind == "msg":
                    assert isinstance(arg, Message)
                    out = rx.receive(arg, now) if rx.handles(arg) else []
                else:
                    assert isinstance(arg, float)
                    now += arg
                    out = rx.on_timeout(now)
            except SparkflashError:
                continue
            for m in out:
                assert isinstance(m, Message)
                coap.encode(m)  # the device can send what it answers
        touched = [name for name, (f, a) in {"internal flash": (internal, 0x08000000)}.items()
                   if f.read(a, len(protected[name])) != protected[name]]
        for name in touched:  # restore, so the next (shrunk) example starts clean
            f, a = (internal, 0x08000000) if name == "internal flash" else (external, 0x1000)
            for sector in range(a, a + len(protected[name]), f.sector_size):
                f.erase_sector(sector)
            f.program(a, protected[name])
        assert not touched, f"OTA changed {' and '.join(touched)}"

    run()


# -- OTA, server side ----------------------------------------------------------------------
@st.composite
def device_replies(draw: st.DrawFn, sent: list[Message]) -> Message:
    """A device message, usually answering something the server sent (its token/mid)."""
    base = draw(st.sampled_from(sent)) if sent and draw(st.integers(0, 3)) else None
    tok = base.token if base is not None else draw(tokens)
    mid = base.mid if base is not None else draw(st.integers(0, 0xFFFF))
    return draw(st.one_of(
        st.builds(ota.update_ready, st.integers(0, 0xFFFF), st.just(tok), st.none() | st.booleans()),
        st.builds(ota.chunk_received, st.integers(0, 0xFFFF), st.just(tok), st.booleans()),
        st.builds(ota.chunk_missed, st.integers(0, 0xFFFF), st.lists(st.integers(0, 70) | st.integers(0, 0xFFFF),
                                                                       max_size=6)),
        st.builds(lambda m: ota.device_update_done(m), st.integers(0, 0xFFFF)),
        st.builds(lambda code: Message(coap.ACK, code, mid, tok), st.sampled_from([coap.EMPTY, coap.CHANGED,
                                                                                    coap.BAD_REQUEST, coap.CONTENT])),
        st.builds(lambda m: Message(m.type, m.code, m.mid, tok, m.options, m.payload), messages),
        st.builds(lambda m: Message(m.type, coap.GET, m.mid, m.token, ((coap.URI_PATH, b"c"),), m.payload), messages),
    ))


@given(st.data(), st.binary(min_size=1, max_size=5000), st.sampled_from([16, 100, 512]), st.booleans(),
       st.booleans(), st.booleans())
def test_server_takes_any_device_replies(data: st.DataObject, payload: bytes, chunk_size: int, fast: bool,
                                         save: bool, pipeline: bool) -> None:
    sender = ota.OtaSender(payload, MessageIds(0x1234, 7), chunk_size=chunk_size, offer_fast=fast,
                           use_save_begin=save, pipeline=pipeline and fast and not save, timing=ota.SenderTiming())
    now = 0.0
    sent = sender.start(now)
    for _ in range(data.draw(st.integers(0, 40))):
        if sender.finished:
            break
        try:
            if data.draw(st.integers(0, 4)):
                out = sender.receive(data.draw(device_replies(sent[-8:])), now)
            else:
                now += data.draw(st.floats(0, 40))
                out = sender.on_timeout(now)
        except SparkflashError:
            continue
        assert len(out) <= sender.count + 8, f"{len(out)} messages at once for {sender.count} chunks"
        for m in out:
            coap.encode(m)
        sent = (sent + out)[-16:]
        assert 0 <= sender.acked <= sender.count
        assert sender.state in ("begin", "sending", "done-wait", "done", "failed"), sender.state


def _key_sector_after(flash: tuple[FlashStore, NorFlash, NorFlash], *msgs: Message) -> bytes:
    store, _, external = flash
    before = external.read(0x1000, 0x100)
    rx = OtaReceiver(store, MessageIds(0), dialect="os")
    try:
        for m in msgs:
            rx.receive(m, 0.0)
        return external.read(0x1000, 0x100)
    finally:
        external.erase_sector(0x1000)
        external.program(0x1000, before)


def test_zero_size_save_begin_leaves_the_server_key(flash: tuple[FlashStore, NorFlash, NorFlash]) -> None:
    before = flash[2].read(0x1000, 0x100)
    assert _key_sector_after(flash, ota.save_begin(1, b"\x01", address=0x1000, file_size=0)) == before


def test_last_chunk_stays_inside_the_announced_range(flash: tuple[FlashStore, NorFlash, NorFlash]) -> None:
    before = flash[2].read(0x1000, 0x100)
    begin = ota.update_begin(1, b"\x01", flags=0, chunk_size=512, file_size=1, destination=ota.DEST_EXTERNAL,
                             address=0xFFF)
    assert _key_sector_after(flash, begin, ota.chunk(2, b"\x02", bytes(512))) == before


# -- OTA sender <-> receiver over a faulty message link -------------------------------------
class RamTarget:
    """The receiver's flash in memory, recording where it wrote (FlashTarget)."""

    SECTOR = 0x1000

    def __init__(self) -> None:
        self.mem = bytearray(b"\xff" * 0x200000)
        self.written: list[tuple[int, int]] = []

    def erase(self, address: int, size: int) -> bool:
        start = address - address % self.SECTOR
        if not (0 <= start and address + max(size, 1) <= len(self.mem)):
            return False
        end = -(-(address + max(size, 1)) // self.SECTOR) * self.SECTOR
        self.mem[start:end] = b"\xff" * (end - start)
        return True

    def write(self, address: int, data: bytes) -> bool:
        if not (0 <= address and address + len(data) <= len(self.mem)):
            return False
        self.written.append((address, len(data)))
        old = self.mem[address : address + len(data)]
        self.mem[address : address + len(data)] = bytes(a & b for a, b in zip(old, data, strict=False))
        return bytes(self.mem[address : address + len(data)]) == data

    def sector_start(self, address: int) -> int:
        return address - address % self.SECTOR


link_faults = st.dictionaries(st.integers(0, 120), st.tuples(
    st.sampled_from(["drop", "duplicate", "delay", "corrupt"]), st.integers(0, 2**16), st.integers(1, 255)), max_size=8)
OTA_STEPS = 20_000


@given(st.binary(min_size=1, max_size=6000),
       st.sampled_from([("os", True, False), ("os", True, True), ("os", False, False), ("ccl", False, False)]),
       st.sampled_from([128, 512]), link_faults)
def test_ota_pair_over_a_faulty_link(data: bytes, mode: tuple[str, bool, bool], chunk_size: int,
                                     faults: dict[int, tuple[str, int, int]]) -> None:
    dialect, fast, pipeline = mode
    # Device OS stores only firmware (in the OTA slot); 0.3.x with flasher_additions takes a file by SaveBegin
    # and, like the real code, chunks of any size (it appends each one whole)
    if dialect == "ccl":  # TCP never duplicates; a 0.3.x Core appends a duplicate (the server's own rule is tested
        faults = {k: v for k, v in faults.items() if v[0] != "duplicate"}  # against the real code)
    target = RamTarget()
    base = 0x80000 if dialect == "ccl" else 0x60000
    rx = OtaReceiver(target, MessageIds(0x4000, 3), dialect=dialect, timing=DeviceTiming(), save_begin=True)
    sender = ota.OtaSender(data, MessageIds(0x1234, 7), chunk_size=chunk_size,
                           destination=ota.DEST_EXTERNAL if dialect == "ccl" else ota.DEST_FIRMWARE,
                           address=base if dialect == "ccl" else 0, use_save_begin=dialect == "ccl", offer_fast=fast,
                           pipeline=pipeline)
    now, sent = 0.0, 0
    queue: list[tuple[float, int, str, bytes]] = []  # (arrival, order, to, wire bytes)

    def post(msgs: list[Message], to: str) -> None:
        nonlocal sent
        for m in msgs:
            # sealed as on the wire, so a corrupted byte has the effect it would have on AES-CBC
            # (a garbled block, one flipped bit in the next), not a targeted plaintext change
            wire, fault = Sealer(KEY, IV).seal(coap.encode(m)), faults.get(sent)
            sent += 1
            at = now + 0.05
            if fault is not None:
                kind, pos, arg = fault
                if kind == "drop":
                    continue
                if kind == "duplicate":
                    queue.append((at + 0.01, sent, to, wire))
                elif kind == "delay":
                    at += arg / 10
                else:  # the ciphertext, not the length prefix (a wrong length ends the connection)
                    i = 2 + pos % (len(wire) - 2)
                    wire = wire[:i] + bytes([wire[i] ^ arg]) + wire[i + 1 :]
            queue.append((at, sent, to, wire))

    post(sender.start(now), "device")
    for _ in range(OTA_STEPS):
        if sender.finished and not queue:
            break
        deadlines = [d for d in (sender.next_deadline, rx.next_deadline) if d is not None]
        if queue and (not deadlines or min(queue)[0] <= min(deadlines)):
            queue.sort()
            at, _, to, wire = queue.pop(0)
            now = max(now, at)
            opener = Opener(KEY, IV)
            opener.receive_data(wire)
            try:
                plain = opener.next_message()
                assert plain is not None
                m = coap.decode(plain)
            except RemoteProtocolError:
                continue  # refused by the framing or CoAP layer: as good as lost
            try:
                if to == "device":
                    post(rx.receive(m, now) if rx.handles(m) else [], "server")
                else:
                    post(sender.receive(m, now), "device")
            except SparkflashError:
                continue
        elif deadlines:
            now = max(now, min(deadlines))
            post(rx.on_timeout(now), "server")
            post(sender.on_timeout(now), "device")
        else:
            break
    else:
        raise AssertionError(f"OTA transfer still running after {OTA_STEPS} steps: sender {sender.state}")
    assert sender.finished or sender.state in ("begin", "sending", "done-wait") and not queue
    end = base + sender.count * chunk_size
    outside = [(a, n) for a, n in target.written if a < base or a + n > end]
    assert not outside, f"device wrote outside 0x{base:x}..0x{end:x}: {outside[:3]}"
    if not faults:  # a clean link: the transfer completes and the bytes are where they belong
        assert sender.state == "done" and bytes(target.mem[base : base + len(data)]) == data
