"""One protocol suite, two devices: the host-built C agent and the Python virtual Core.

Every test runs against both (the `device` fixture); the C agent is the reference, so a
difference is a bug of the virtual Core. Covers the line commands, SUMS, the release
record (down to its bytes on flash) and YMODEM edge cases, driven byte by byte."""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from collections.abc import Iterator

import pytest
from sfa_harness import Device

from sparkflash.errors import DeviceError
from sparkflash.protocols import listening as L
from sparkflash.protocols import release_record as RR
from sparkflash.protocols import ymodem as Y
from sparkflash.transports.serial_port import SerialLink, open_serial

ACK, NAK, C, CAN = bytes([Y.ACK]), bytes([Y.NAK]), b"C", bytes([Y.CAN])


class Wire:
    """The host end of the port, read at the byte level."""

    def __init__(self, port: str) -> None:
        self.link: SerialLink = open_serial(port)
        self.link.drain_input()
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.link.write(data)

    def line(self, timeout: float = 5.0) -> str:
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            assert time.monotonic() < end, f"no line (have {bytes(self.buf)!r})"
            self.buf += self.link.read(4096, 0.05)
        i = self.buf.index(b"\n")
        got = bytes(self.buf[:i]).rstrip(b"\r").decode("ascii", "replace")
        del self.buf[: i + 1]
        return got

    def ask(self, line: bytes) -> str:
        self.send(line)
        return self.line()

    def expect(self, want: bytes, timeout: float = 5.0) -> None:
        """The next bytes are exactly `want`."""
        end = time.monotonic() + timeout
        while len(self.buf) < len(want):
            assert time.monotonic() < end, f"waited for {want!r}, have {bytes(self.buf)!r}"
            self.buf += self.link.read(4096, 0.05)
        got = bytes(self.buf[: len(want)])
        del self.buf[: len(want)]
        assert got == want, f"expected {want!r}, got {got!r} (then {bytes(self.buf)!r})"

    def close(self) -> None:
        self.link.close()


@pytest.fixture
def wire(device: Device) -> Iterator[Wire]:
    w = Wire(device.port)
    yield w
    w.close()


def crc(data: bytes) -> str:
    return f"{zlib.crc32(data):08x}"


def test_i_prints_the_id_then_the_agent_banner(device: Device, wire: Wire) -> None:
    wire.send(b"i")
    assert wire.line() == f"Your core id is {device.device_id}"
    assert wire.line() == L.AGENT_BANNER
    assert wire.ask(b"ID\n") == f"OK {device.device_id}"


def test_sum_and_sums(device: Device, wire: Wire) -> None:
    data = os.urandom(0x3456)
    device.write_external(0x80000, data)
    assert wire.ask(b"SUM 00080000 3456\n") == f"OK {crc(data)} {hashlib.sha256(data).hexdigest()}"
    for a, n in [(0x80000, 0x3456), (0x80123, 0x2000), (0x80fff, 2), (0x80000, 0x1000), (0x80010, 0), (0x1ff000, 0x1000)]:
        want = device.read_external(a, n)
        pieces = L.sector_pieces(a, n)
        got = wire.ask(L.encode_sums(a, n))
        assert got == "OK " + " ".join([str(len(pieces))] + [crc(want[p - a : p - a + k]) for p, k in pieces]), hex(a)
        assert L.parse_sums(L.parse_reply(got, "SUMS"), a, n, "SUMS") == [zlib.crc32(want[p - a : p - a + k]) for p, k in pieces]
    assert wire.ask(b"SUM 0 0\n").startswith("OK 00000000 e3b0c442")
    assert wire.ask(b"SUM 08000000 20001\n").startswith("ERR 2 ")
    assert wire.ask(b"SUMS 001fffff 2\n").startswith("ERR 2 ")
    assert wire.ask(b"SUMS 08001000 1000\n").startswith("OK 1 ")


LINES = [  # line, expected reply code ("OK" or "ERR n")
    (b"FROB 1\n", "ERR 1"), (b"SUM 0x10 10\n", "ERR 1"), (b"SUM 123456789 1\n", "ERR 1"), (b"SUM 10\n", "ERR 1"),
    (b"ID 1\n", "ERR 1"), (b"SAVE 80000 10 ANYX\n", "ERR 1"), (b"SAVE 80000 10 ANY 1\n", "ERR 1"),
    (b"SUM  80000   10  \n", "OK"), (b"SUM 80000 10\r\r\n", "OK"), (b"SUM\t80000 10\n", "ERR 1"),
    (b"SUM 8000\xff 10\n", "ERR 1"), (b"sum 80000 10\nID\n", "OK"), (b"  \r\n\0ID\n", "OK"),
    (b"S" + b"U" * 160 + b"\n", "ERR 1"), (b"SUM 80000 10" + b" " * 148 + b"\n", "OK"),
    (b"SUM 80000 10" + b" " * 149 + b"\n", "ERR 1"), (b"X" * 500 + b"\n", "ERR 1"),
    (b"REC SET a 1 " + b"0" * 63 + b"\n", "ERR 1"), (b"REC SET a 1 " + b"g" * 64 + b"\n", "ERR 1"),
    (b"REC SET " + b"a" * 33 + b" 1 " + b"0" * 64 + b"\n", "ERR 1"), (b"REC SET a/b 1 " + b"0" * 64 + b"\n", "ERR 1"),
    (b"REC GET\n", "ERR 1"), (b"REC\n", "OK"),
    (b"SAVE 00001000 10\n", "ERR 2"), (b"SAVE 00020000 10\n", "ERR 2"), (b"SAVE 00070000 10\n", "ERR 2"),
    (b"SAVE 00000000 10 ANY\n", "ERR 2"), (b"SAVE 00000fff 2 ANY\n", "ERR 2"), (b"SAVE 001ff000 2000 ANY\n", "ERR 2"),
    (b"SAVE 00080000 0\n", "ERR 2"), (b"SAVE ffffffff ffffffff ANY\n", "ERR 2"),
]


@pytest.mark.parametrize(("line", "code"), LINES, ids=[repr(x[0][:24]) for x in LINES])
def test_line_rules(wire: Wire, line: bytes, code: str) -> None:
    got = wire.ask(line)
    assert got.split(" ")[0] == code.split(" ")[0] and (code == "OK" or got.startswith(code + " ")), got
    assert wire.ask(b"ID\n").startswith("OK ")  # and the device is back to normal


def test_release_record(device: Device, wire: Wire) -> None:
    assert wire.ask(b"REC\n") == "OK -"
    sha = hashlib.sha256(b"manifest").hexdigest()
    assert wire.ask(L.encode_rec_set("example", "1.0.0", sha.upper())) == "OK"
    assert wire.ask(L.encode_rec()) == f"OK example 1.0.0 {sha}"
    area = 0x3000
    assert RR.latest(device.read_external(area, 0x1000)) == RR.Record("example", "1.0.0", sha)
    for i in range(40):  # past 32 slots: the log starts over
        assert wire.ask(f"REC SET r{i} 2.{i}.0-rc+{i} {sha}\n".encode()) == "OK", i
    assert wire.ask(b"REC\n") == f"OK r39 2.39.0-rc+39 {sha}"
    sector = device.read_external(area, 0x1000)
    assert sector[8 * RR.SLOT : 8 * RR.SLOT + RR.SLOT] == RR.encode_slot(RR.Record("r39", "2.39.0-rc+39", sha))
    assert sector[9 * RR.SLOT :] == b"\xff" * (0x1000 - 9 * RR.SLOT)
    # a torn slot after the good one: the good one stands
    device.write_external(area, sector[: 9 * RR.SLOT] + RR.encode_slot(RR.Record("torn", "1", sha))[:50])
    assert wire.ask(b"REC\n") == f"OK r39 2.39.0-rc+39 {sha}"


# -- YMODEM -----------------------------------------------------------------------------
def start_save(wire: Wire, address: int, length: int, extra: bytes = b"") -> None:
    wire.send(L.encode_save(address, length).rstrip(b"\n") + extra + b"\n")
    assert wire.line() == "OK"
    wire.expect(C)


def blocks(data: bytes, size: int = 1024) -> list[bytes]:
    return [Y.encode_block(i + 1, data[o : o + size].ljust(size, bytes([Y.SUB])))
            for i, o in enumerate(range(0, len(data), size))]


def finish(wire: Wire) -> None:
    wire.send(bytes([Y.EOT]))
    wire.expect(ACK + C)
    wire.send(Y.END_OF_BATCH)
    wire.expect(ACK)


def test_save_with_duplicates_bad_crc_early_eot_and_padding(device: Device, wire: Wire) -> None:
    old = os.urandom(0x1000)
    device.write_external(0x81000, old)
    data = os.urandom(2500)  # 3 blocks of 1024; the last one padded
    start_save(wire, 0x81000, len(data))
    wire.send(Y.encode_header("f.bin", len(data)))
    wire.expect(ACK + C)
    b = blocks(data)
    wire.send(b[0])
    wire.expect(ACK)
    wire.send(b[0])  # our ACK was "lost": the same block again is ACKed, not written twice
    wire.expect(ACK)
    bad = bytearray(b[1])
    bad[500] ^= 1
    wire.send(bytes(bad))  # CRC error: NAK, then the good copy
    wire.expect(NAK)
    wire.send(b[1])
    wire.expect(ACK)
    wire.send(bytes([Y.EOT]))  # an EOT before the announced size is not an end
    wire.expect(NAK)
    wire.send(b[2])
    wire.expect(ACK)
    finish(wire)
    assert wire.line() == f"OK {len(data):x}"
    assert device.read_external(0x81000, len(data)) == data
    assert device.read_external(0x81000 + len(data), 0x1000 - len(data)) == old[len(data):]  # no 0x1A padding


def test_header_size_must_match_save(wire: Wire) -> None:
    start_save(wire, 0x80000, 100)
    wire.send(Y.encode_header("f.bin", 101))
    wire.expect(CAN * 8)
    assert wire.line().startswith("ERR 5 ")
    start_save(wire, 0x80000, 100)
    wire.send(Y.encode_block(0, b"f.bin\0".ljust(128, b"\0")))  # no size at all
    wire.expect(CAN * 8)
    assert wire.line().startswith("ERR 5 ")


def test_empty_batch_and_sender_cancel(device: Device, wire: Wire) -> None:
    before = device.read_external(0x80000, 0x1000)
    start_save(wire, 0x80000, 100)
    wire.send(Y.END_OF_BATCH)
    wire.expect(ACK)
    assert wire.line().startswith("ERR 5 ")
    start_save(wire, 0x80000, 100)
    wire.send(Y.encode_header("f.bin", 100))
    wire.expect(ACK + C)
    wire.send(CAN * 2)
    assert wire.line().startswith("ERR 4 ")
    assert device.read_external(0x80000, 0x1000) == before  # nothing written, nothing erased


def test_second_file_in_a_batch_is_refused(wire: Wire) -> None:
    data = os.urandom(128)
    start_save(wire, 0x80000, len(data))
    wire.send(Y.encode_header("a", len(data)))
    wire.expect(ACK + C)
    wire.send(Y.encode_block(1, data))
    wire.expect(ACK)
    wire.send(bytes([Y.EOT]))
    wire.expect(ACK + C)
    wire.send(Y.encode_header("b", len(data)))
    wire.expect(CAN * 8)
    assert wire.line().startswith("ERR 4 ")


def test_too_many_bad_blocks_cancel(wire: Wire) -> None:
    start_save(wire, 0x80000, 2000)
    wire.send(Y.encode_header("f.bin", 2000))
    wire.expect(ACK + C)
    bad = bytearray(Y.encode_block(1, bytes(1024)))
    bad[-1] ^= 0xFF
    for _ in range(5):
        wire.send(bytes(bad))
        wire.expect(NAK)
    wire.send(bytes(bad))  # the sixth consecutive error
    wire.expect(CAN * 8)
    assert wire.line().startswith("ERR 4 ")


def test_stock_f_refuses_a_too_big_image(wire: Wire) -> None:
    wire.send(b"f")
    assert wire.line() == L.FW_PROMPT
    wire.expect(C)
    wire.send(Y.encode_header("firmware.bin", 0x1B001))
    wire.expect(CAN * 8)
    assert wire.line() == L.FW_TOO_BIG


def test_stock_f_installs_the_image_and_resets(device: Device, wire: Wire) -> None:
    image = os.urandom(3000)
    wire.send(b"f")
    assert wire.line() == L.FW_PROMPT
    wire.expect(C)
    wire.send(Y.encode_header("app.bin", len(image)))
    wire.expect(ACK + C)
    for b in blocks(image):
        wire.send(b)
        wire.expect(ACK)
    finish(wire)
    assert [wire.line() for _ in range(5)] == ["", L.FW_DONE, "Name: app.bin", f"Size: {len(image)} bytes", L.FW_RESTART]
    wire.close()
    end = time.monotonic() + 10  # the port goes away and comes back (a new pty behind the same path)
    got = None
    while got is None:
        try:
            again = Wire(device.port)
        except (DeviceError, OSError):  # gone, or not back yet
            assert time.monotonic() < end, "the port did not come back"
            time.sleep(0.1)
            continue
        try:
            got = again.ask(L.encode_sum(0x08005000, len(image)))
        except (DeviceError, OSError, AssertionError):  # the old pty dying under us
            assert time.monotonic() < end, "no SUM reply after the reset"
        finally:
            again.close()
    assert got == f"OK {crc(image)} {hashlib.sha256(image).hexdigest()}"


def test_stock_f_refuses_an_empty_image(wire: Wire) -> None:
    wire.send(b"f")
    assert wire.line() == L.FW_PROMPT
    wire.expect(C)
    wire.send(Y.encode_header("firmware.bin", 0))
    wire.expect(CAN * 8)
    assert wire.line().startswith("ERR 5 ")
    assert wire.ask(b"ID\n").startswith("OK ")  # no reset
