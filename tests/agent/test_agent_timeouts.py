"""The C agent's YMODEM timeouts, on a clock running 20 times fast (SFA_HOST_TIME_SCALE):
20 'C' prompts without a sender, then cancel; NAK per silent block, cancel after the sixth;
'C' again while the end-of-batch header is late."""

from __future__ import annotations

import time
from collections.abc import Callable

from sfa_harness import HostAgent

from sparkflash.protocols import listening as L
from sparkflash.protocols import ymodem as Y
from sparkflash.transports.serial_port import open_serial

SCALE = {"SFA_HOST_TIME_SCALE": "20"}


def read_until(link: object, pred: Callable[[bytes], bool], seconds: float) -> bytes:
    got, end = b"", time.monotonic() + seconds
    while not pred(got):
        assert time.monotonic() < end, f"gave up waiting, have {got!r}"
        got += link.read(4096, 0.05)  # type: ignore[attr-defined]
    return got


def test_no_sender_gives_up_after_20_prompts(start_agent: Callable[..., HostAgent]) -> None:
    agent = start_agent(env=SCALE)
    link = open_serial(agent.port)
    try:
        link.write(L.encode_save(0x80000, 100))
        got = read_until(link, lambda b: b.endswith(b"\n") and b"ERR" in b, 20)
        assert got.startswith(b"OK\r\n")
        body = got[4:]
        assert body.startswith(b"C" * 20 + bytes([Y.CAN]) * 8 + b"ERR 4 "), body
        assert b"no sender" in body
    finally:
        link.close()


def test_silent_sender_is_nakked_then_cancelled(start_agent: Callable[..., HostAgent]) -> None:
    agent = start_agent(env=SCALE)
    link = open_serial(agent.port)
    try:
        link.write(L.encode_save(0x80000, 2000))
        read_until(link, lambda b: b.endswith(b"OK\r\nC"), 5)
        link.write(Y.encode_header("f.bin", 2000))
        read_until(link, lambda b: b == bytes([Y.ACK]) + b"C", 5)
        link.write(Y.encode_block(1, bytes(1024)))
        read_until(link, lambda b: b == bytes([Y.ACK]), 5)
        link.write(Y.encode_block(2, bytes(1024))[:500])  # half a block, then silence
        got = read_until(link, lambda b: b.endswith(b"\n"), 20)
        assert got.startswith(bytes([Y.NAK]) * 5 + bytes([Y.CAN]) * 8 + b"ERR 4 "), got
        assert b"timeout" in got
    finally:
        link.close()


def test_late_end_of_batch_gets_c_again(start_agent: Callable[..., HostAgent]) -> None:
    agent = start_agent(env=SCALE)
    link = open_serial(agent.port)
    try:
        data = bytes(range(100))
        link.write(L.encode_save(0x80000, len(data)))
        read_until(link, lambda b: b.endswith(b"OK\r\nC"), 5)
        link.write(Y.encode_header("f.bin", len(data)))
        read_until(link, lambda b: b == bytes([Y.ACK]) + b"C", 5)
        link.write(Y.encode_block(1, data.ljust(128, b"\x1a")))
        read_until(link, lambda b: b == bytes([Y.ACK]), 5)
        link.write(bytes([Y.EOT]))
        read_until(link, lambda b: b == bytes([Y.ACK]) + b"C", 5)
        read_until(link, lambda b: b == b"CC", 5)  # two block timeouts: 'C' each, the session lives
        link.write(Y.END_OF_BATCH)
        got = read_until(link, lambda b: b.endswith(b"\n"), 5)
        assert got == bytes([Y.ACK]) + f"OK {len(data):x}\r\n".encode()
    finally:
        link.close()
    assert agent.read_external(0x80000, 128) == data + b"\xff" * 28
