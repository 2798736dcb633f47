"""YMODEM machines in memory: golden bytes from ymodem.md, sender <-> receiver pairs, faults."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparkflash.errors import RemoteProtocolError, TransportTimeout
from sparkflash.protocols import ymodem as y

Tamper = Callable[[str, bytes], bytes]


def _same(direction: str, data: bytes) -> bytes:
    return data


def run_pair(sender: y.Sender, receiver: y.Receiver, tamper: Tamper = _same,
             accept: bool = True, steps: int = 20000) -> tuple[bytes, list[object], list[object]]:
    """Move bytes between the machines; when neither can progress, fire the nearer timeout."""
    got = bytearray()
    s_events: list[object] = []
    r_events: list[object] = []
    for _ in range(steps):
        moved = False
        while not isinstance(ev := sender.next_event(), y.NeedData):
            s_events.append(ev)
            moved = True
        out = sender.data_to_send()
        if out:
            receiver.receive_data(tamper("s2r", out))
            moved = True
        while receiver.state != "failed" and not isinstance(ev := receiver.next_event(), y.NeedData):
            r_events.append(ev)
            moved = True
            if isinstance(ev, y.FileHeader):
                receiver.accept() if accept else receiver.reject()
            elif isinstance(ev, y.FileData):
                assert ev.offset == len(got)
                got += ev.data
        out = receiver.data_to_send()
        if out:
            sender.receive_data(tamper("r2s", out))
            moved = True
        if sender.done and receiver.done:
            return bytes(got), s_events, r_events
        if not moved:
            rt = receiver.timeout_s if not receiver.done else None
            if rt is not None and rt < sender.timeout_s:
                receiver.on_timeout()
            else:
                sender.on_timeout()
    raise AssertionError("transfer did not finish")


# -- golden vectors (shared/specs/ymodem.md §2-3) -------------------------------------------
def test_crc16_check_value() -> None:
    assert y.crc16(b"123456789") == 0x31C3


def test_end_of_batch_block_is_all_zero_with_zero_crc() -> None:
    assert y.END_OF_BATCH == b"\x01\x00\xff" + bytes(128) + b"\x00\x00"


def test_header_has_space_after_length_and_zero_padding() -> None:
    h = y.encode_header("dir/k1.bin", 1000)
    assert h[:3] == b"\x01\x00\xff" and len(h) == 133
    assert h[3:3 + 12] == b"k1.bin\x001000 "
    assert h[3 + 12:131] == bytes(128 - 12)
    assert int.from_bytes(h[131:], "big") == y.crc16(h[3:131])


def test_data_block_layout() -> None:
    b = y.encode_block(256 + 3, bytes(range(256)) * 4)
    assert b[:3] == b"\x02\x03\xfc" and len(b) == 1029


def test_parse_lrzsz_header_with_block_count_junk() -> None:
    payload = bytearray(b"k1.bin\x001000 15301452511 100644 0 1 1000".ljust(128, b"\0"))
    payload[126], payload[127] = 0x08, 0x07  # lrzsz's IMP/KMD block count
    assert y.parse_header(bytes(payload)) == ("k1.bin", 1000)


# -- round trips ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 127, 128, 129, 896, 897, 1024, 1025, 4096, 70_001])  # 0: refused (#19)
def test_round_trip_sizes(size: int) -> None:
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    got, s_events, r_events = run_pair(y.Sender("f.bin", data), y.Receiver())
    assert got == data
    assert s_events[-1] == y.Finished() and s_events[-2] == y.Progress(size, size)
    assert r_events[0] == y.FileHeader("f.bin", size)
    assert r_events[-2:] == [y.FileEnd("f.bin", size, size), y.BatchEnd()]


@given(st.binary(min_size=1, max_size=5000), st.sampled_from([128, 1024]))
def test_round_trip_any_data(data: bytes, block: int) -> None:
    got, _, _ = run_pair(y.Sender("x", data, block_size=block), y.Receiver())
    assert got == data


def test_receiver_takes_128_byte_blocks() -> None:
    seen: list[int] = []

    def spy(direction: str, data: bytes) -> bytes:
        if direction == "s2r" and data[:1] in (b"\x01", b"\x02") and data[1] != 0:
            seen.append(len(data))
        return data

    data = bytes(range(256)) * 3
    got, _, _ = run_pair(y.Sender("x", data, block_size=128), y.Receiver(), spy)
    assert got == data and set(seen) == {133}


def test_tail_uses_128_byte_blocks_like_sb_k() -> None:
    frames: list[int] = []

    def spy(direction: str, data: bytes) -> bytes:
        if direction == "s2r" and data[:1] in (b"\x01", b"\x02") and data[1] != 0:
            frames.append(len(data))
        return data

    run_pair(y.Sender("x", bytes(10_000)), y.Receiver(), spy)
    assert frames == [1029] * 9 + [133] * 7  # ymodem.md §8.3: 9 x 1K + 7 x 128


# -- faults -----------------------------------------------------------------------------
def test_corrupted_block_is_naked_and_resent() -> None:
    hit = {"n": 0}

    def corrupt_third_frame(direction: str, data: bytes) -> bytes:
        if direction == "s2r" and data[:1] == b"\x02":
            hit["n"] += 1
            if hit["n"] == 3:
                return data[:500] + bytes([data[500] ^ 0x40]) + data[501:]
        return data

    data = bytes(range(256)) * 20
    s = y.Sender("x", data)
    got, _, _ = run_pair(s, y.Receiver(), corrupt_third_frame)
    assert got == data and s.retries == 1


def test_lost_ack_gives_a_duplicate_that_is_acked_not_stored() -> None:
    dropped = {"done": False}

    def drop_one_ack(direction: str, data: bytes) -> bytes:
        if direction == "r2s" and data == b"\x06" and not dropped["done"]:
            dropped["done"] = True
            return b""
        return data

    data = bytes(range(256)) * 12
    s = y.Sender("x", data)
    # The first lone ACK is the one for data block 1 (the header's comes with a 'C').
    got, _, r_events = run_pair(s, y.Receiver(), drop_one_ack)
    assert got == data and s.retries == 1
    assert sum(isinstance(e, y.FileData) for e in r_events) == 3


def test_sender_gives_up_after_ten_tries_and_cancels() -> None:
    s = y.Sender("x", b"abc")
    s.receive_data(b"C")
    assert s.next_event() == y.NEED_DATA
    s.data_to_send()
    with pytest.raises(RemoteProtocolError, match="after 10 tries"):
        for _ in range(10):
            s.receive_data(bytes([y.NAK]))
            s.next_event()
    assert s.data_to_send().endswith(y.CANCEL)


def test_receiver_rejecting_the_header_cancels_the_sender() -> None:
    with pytest.raises(RemoteProtocolError, match=r"receiver cancelled \(CAN CAN\) at the file header"):
        run_pair(y.Sender("x", b"data"), y.Receiver(), accept=False)


def test_sender_cancel_ends_the_receiver() -> None:
    r = y.Receiver()
    s = y.Sender("x", bytes(3000))
    r.receive_data(b"")
    s.receive_data(r.data_to_send())
    s.next_event()
    r.receive_data(s.data_to_send())
    assert isinstance(r.next_event(), y.FileHeader)
    r.accept()
    s.receive_data(r.data_to_send())
    s.next_event()
    s.cancel()
    r.receive_data(s.data_to_send())
    with pytest.raises(RemoteProtocolError, match="sender cancelled"):
        r.next_event()
    assert r.data_to_send() == b""  # the receiver does not answer a cancel with more bytes


def test_end_header_waits_for_the_receivers_c() -> None:
    s = y.Sender("x", b"z")
    for incoming in (b"C", b"\x06C", b"\x06"):
        s.receive_data(incoming)
        while not isinstance(s.next_event(), y.NeedData):
            pass
        s.data_to_send()
    s.receive_data(b"\x06")  # EOT ACKed (EOT was sent after the data ACK above)
    s.next_event()
    assert s.state == "end_c" and s.data_to_send() == b""
    s.receive_data(b"C")
    s.next_event()
    assert s.data_to_send() == y.END_OF_BATCH


def test_end_header_resent_when_rb_lost_it() -> None:
    s = y.Sender("x", b"x")
    s.receive_data(b"C\x06C\x06\x06C")  # header ACK+C, block ACK, EOT ACK, then the end 'C'
    while not isinstance(s.next_event(), y.NeedData):
        pass
    s.data_to_send()
    s.receive_data(b"C")  # rb purged our end header and asks again
    s.next_event()
    assert s.data_to_send() == y.END_OF_BATCH


def test_sender_start_timeout() -> None:
    s = y.Sender("x", b"abc")
    with pytest.raises(TransportTimeout, match="no 'C'"):
        s.on_timeout()


def test_receiver_ignores_noise_and_truncates_padding() -> None:
    r = y.Receiver()
    r.receive_data(b"**\x18B00000000000000\r\x8a\x11" + y.encode_header("n", 3))
    assert r.next_event() == y.FileHeader("n", 3)
    r.accept()
    r.receive_data(y.encode_block(1, b"abc".ljust(128, b"\x1a")))
    assert r.next_event() == y.FileData(0, b"abc")


def test_receiver_gives_up_after_too_many_timeouts() -> None:
    r = y.Receiver(max_errors=2)
    r.receive_data(y.encode_header("n", 3))
    r.next_event()
    r.accept()
    r.on_timeout()
    r.on_timeout()
    with pytest.raises(RemoteProtocolError, match="too many errors"):
        r.on_timeout()
    assert r.data_to_send().endswith(y.CANCEL)


def test_lost_header_ack_resends_the_header_and_is_reacked() -> None:
    dropped = {"done": False}

    def drop_header_ack(direction: str, data: bytes) -> bytes:
        if direction == "r2s" and data == b"\x06C" and not dropped["done"]:
            dropped["done"] = True
            return b""
        return data

    data = bytes(range(256)) * 5
    got, _, r_events = run_pair(y.Sender("x", data), y.Receiver(), drop_header_ack)
    assert got == data and sum(isinstance(e, y.FileHeader) for e in r_events) == 1


def test_sender_falls_back_to_checksum_mode_on_nak_start() -> None:
    s = y.Sender("x", b"abc")
    s.receive_data(bytes([y.NAK]))
    s.next_event()
    header = s.data_to_send()
    assert len(header) == 132 and header[-1] == sum(header[3:131]) & 0xFF
