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
        st.integers(0, 70000)
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
    intact = [p for p, e in zip(plains, ends) if at < 0 or e <= at]
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
    protected = {"internal": internal.read(0x08000000, 0x20000), "keys": external.read(0x1000, 0x2000)}

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
        assert internal.read(0x08000000, 0x20000) == protected["internal"], "OTA touched internal flash"
        assert external.read(0x1000, 0x2000) == protected["keys"], "OTA touched the key sectors"

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
       st.booleans())
def test_server_takes_any_device_replies(data: st.DataObject, payload: bytes, chunk_size: int, fast: bool,
                                         save: bool) -> None:
    sender = ota.OtaSender(payload, MessageIds(0x1234, 7), chunk_size=chunk_size, offer_fast=fast,
                           use_save_begin=save, timing=ota.SenderTiming())
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
