"""AES-128-CBC framing: PKCS#7, length prefix, per-direction IV = first ciphertext block (§4)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparkflash.errors import LocalProtocolError, RemoteProtocolError
from sparkflash.protocols.cloud_framing import Opener, Sealer, decrypt, encrypt, pad, unpad

KEY, IV = os.urandom(16), os.urandom(16)


def test_pkcs7_of_the_aes_vector_plaintext() -> None:
    msg = b"Super secret message\n"  # TestAES.cpp: 21 bytes + eleven 0x0b
    assert pad(msg) == msg + b"\x0b" * 11
    assert pad(b"x" * 16) == b"x" * 16 + b"\x10" * 16  # aligned: a whole extra block
    assert unpad(pad(msg)) == msg


def test_bad_padding_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="PKCS#7"):
        unpad(b"a" * 15 + b"\x05")
    with pytest.raises(RemoteProtocolError, match="PKCS#7"):
        unpad(b"a" * 15 + b"\x00")


def test_iv_chains_on_the_first_ciphertext_block_not_the_last() -> None:
    s = Sealer(KEY, IV)
    f1, f2 = s.seal(b"A" * 40), s.seal(b"second message")
    assert int.from_bytes(f1[:2], "big") == len(f1) - 2 == 48
    c1, c2 = f1[2:], f2[2:]
    assert decrypt(KEY, c1[:16], c2) == b"second message"
    with pytest.raises(RemoteProtocolError):  # continuous-CBC chaining (last block) is wrong
        assert decrypt(KEY, c1[-16:], c2) != b"second message"


def test_opener_reassembles_split_frames_and_keeps_its_own_chain() -> None:
    s, o = Sealer(KEY, IV), Opener(KEY, IV)
    stream = b"".join(s.seal(bytes([i]) * (i * 7)) for i in range(1, 6))
    got = []
    for i in range(0, len(stream), 5):  # dribble 5 bytes at a time
        o.receive_data(stream[i : i + 5])
        while (m := o.next_message()) is not None:
            got.append(m)
    assert got == [bytes([i]) * (i * 7) for i in range(1, 6)]


def test_device_buffer_limits() -> None:
    o = Opener(KEY, IV, max_len=640)
    o.receive_data((656).to_bytes(2, "big"))
    with pytest.raises(RemoteProtocolError, match="at most 640"):
        o.next_message()
    with pytest.raises(LocalProtocolError, match="622"):
        Sealer(KEY, IV, max_len=622).seal(b"x" * 700)


@given(st.lists(st.binary(max_size=600), max_size=6))
def test_round_trip_any_messages(msgs: list[bytes]) -> None:
    s, o = Sealer(KEY, IV), Opener(KEY, IV)
    for m in msgs:
        o.receive_data(s.seal(m))
        assert o.next_message() == m
        assert s.iv == o.iv
    assert encrypt(KEY, IV, b"") != b""
