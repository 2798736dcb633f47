"""CoAP subset: the plaintext vectors of spark-cloud-protocol.md §5, §6, §12 (decoded values)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparkflash.errors import RemoteProtocolError
from sparkflash.protocols import coap, ota
from sparkflash.protocols.coap import ACK, CON, NON, Message, MessageIds, decode, encode

H = bytes.fromhex


def test_function_call_vector_decodes() -> None:
    raw = H("4102abcdef") + H("b166") + b"\x04brew" + b"\x46" + b"32,240"
    m = decode(raw)
    assert (m.type, m.code, m.mid, m.token) == (CON, coap.POST, 0xABCD, b"\xef")
    assert m.options == ((11, b"f"), (11, b"brew"), (15, b"32,240"))
    assert m.path == "f" and encode(m) == raw


@pytest.mark.parametrize("raw, msg", [
    (H("4102abd033b175"), Message(CON, coap.POST, 0xABD0, b"\x33", ((11, b"u"),))),  # UpdateBegin (no payload)
    (H("4103abd211b175"), ota.update_done(0xABD2, b"\x11")),
    (H("5002f649b168"), Message(NON, coap.POST, 0xF649, b"", ((11, b"h"),))),  # server Hello
    (H("5002f649b168ffffffffff0000"), Message(NON, coap.POST, 0xF649, b"", ((11, b"h"),), H("ffffffff0000"))),
    (H("5144f64901"), ota.chunk_received(0xF649, b"\x01", True)),
    (H("5144f64910"), ota.update_ready(0xF649, b"\x10", None)),
    (H("518097b322"), ota.chunk_received(0x97B3, b"\x22", False)),
    (H("400197b4b163ff0000"), ota.chunk_missed(0x97B4, [0])),
    (H("6000abd0"), ota.empty_ack(0xABD0)),
    (H("6144abd211"), Message(ACK, coap.CHANGED, 0xABD2, b"\x11")),
    (H("410197b398b174"), Message(CON, coap.GET, 0x97B3, b"\x98", ((11, b"t"),))),  # time request
    # the Node server's UpdateBegin for a 300-byte file (§6.1)
    (H("4102dadb02b175ff00" "0100" "0000012c" "00" "00000000"),
     ota.update_begin(0xDADB, b"\x02", flags=0, chunk_size=256, file_size=300, destination=0, address=0)),
])
def test_vectors_encode_and_decode(raw: bytes, msg: Message) -> None:
    assert encode(msg) == raw
    assert decode(raw) == msg


def test_chunk_vector_fixed_offsets() -> None:
    data = b"A" * 72
    raw = H("4102abd122b1634401234567ff") + data
    m = decode(raw)
    crc, index, payload = ota.parse_chunk(m)
    assert (crc, index, payload) == (0x01234567, None, data)
    built = ota.chunk(0xABD1, b"\x22", data)
    b = encode(built)
    # a 0.3.x Core reads the token at 4, the CRC at 8..11 and the data from 13
    assert b[4] == 0x22 and b[8:12] == ota.crc32(data).to_bytes(4, "big") and b[13:] == data
    indexed = encode(ota.chunk(1, b"\x01", data, index=7))
    assert indexed[12:16] == H("020007ff")  # second Uri-Query (delta 0) then the marker


def test_update_begin_payload_at_offset_8_and_save_begin_offsets() -> None:
    b = encode(ota.update_begin(1, b"\x05", flags=1, chunk_size=512, file_size=70000, destination=1, address=0x100000))
    assert b[7] == 0xFF and len(b) == 20
    assert b[8:20] == H("01") + H("0200") + (70000).to_bytes(4, "big") + H("01") + H("00100000")
    assert ota.parse_update_begin(decode(b)) == (1, 512, 70000, 1, 0x100000)
    s = encode(ota.save_begin(2, b"\x06", address=0x80000, file_size=5000))
    assert s[5:8] == H("b173ff") and s[8:12] == H("00080000") and s[12:16] == (5000).to_bytes(4, "big")


@pytest.mark.parametrize("length, head", [(12, b"\x0c"), (13, b"\x0d\x00"), (268, b"\x0d\xff"), (269, b"\x0e\x00\x00")])
def test_option_length_extensions(length: int, head: bytes) -> None:
    m = Message(CON, coap.POST, 1, b"", ((0, b"x" * length),))
    raw = encode(m)
    assert raw[4 : 4 + len(head)] == head
    assert decode(raw) == m


def test_reserved_option_nibble_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="reserved"):
        decode(H("40020001") + b"\x0f")


def test_truncated_and_bad_version_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        decode(H("4002"))
    with pytest.raises(RemoteProtocolError, match="version"):
        decode(H("80020001"))
    with pytest.raises(RemoteProtocolError, match="runs past"):
        decode(H("40020001b5") + b"ab")


def test_ids_pre_increment_wrap_and_skip_token_255() -> None:
    ids = MessageIds(0xFFFF, 253)
    assert ids.next_mid() == 0 and ids.next_mid() == 1
    assert [ids.next_token() for _ in range(3)] == [b"\xfe", b"\x00", b"\x01"]


opts = st.lists(st.tuples(st.integers(0, 300), st.binary(max_size=300)), max_size=4)


@given(st.integers(0, 3), st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=8), opts, st.binary(max_size=64))
def test_round_trip(t: int, code: int, mid: int, token: bytes, options: list[tuple[int, bytes]], payload: bytes) -> None:
    m = Message(t, code, mid, token, tuple(sorted(options, key=lambda o: o[0])), payload)
    assert decode(encode(m)) == m


@given(st.binary(max_size=64))
def test_decode_never_crashes_unexpectedly(raw: bytes) -> None:
    try:
        decode(raw)
    except RemoteProtocolError:
        pass
