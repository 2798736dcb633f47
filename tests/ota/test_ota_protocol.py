"""Server OtaSender against device OtaReceiver in memory (no sockets): both modes, the safe rule."""

from __future__ import annotations

import os

import pytest

from sparkflash.protocols import coap, ota
from sparkflash.protocols.coap import Message, MessageIds
from sparkflash.protocols.ota_receiver import OTA_SLOT, DeviceTiming, OtaReceiver


class Flash:
    """A sparse byte store with erase-before-write semantics (enough for the receiver)."""

    def __init__(self) -> None:
        self.mem: dict[int, int] = {}
        self.writes: list[int] = []

    def erase(self, address: int, size: int) -> bool:
        start = address - address % 4096
        for a in range(start, address + max(size, 1)):
            self.mem.pop(a, None)
        return True

    def write(self, address: int, data: bytes) -> bool:
        self.writes.append(address)
        for i, b in enumerate(data):
            self.mem[address + i] = self.mem.get(address + i, 0xFF) & b
        return self.read(address, len(data)) == data

    def read(self, address: int, n: int) -> bytes:
        return bytes(self.mem.get(address + i, 0xFF) for i in range(n))

    def sector_start(self, address: int) -> int:
        return address - address % 4096


def run(sender: ota.OtaSender, rx: OtaReceiver, *, drop: set[int] = frozenset(), now: float = 0.0) -> float:  # type: ignore[assignment]
    """Deliver messages both ways until the sender finishes; `drop` = chunk sends (by count) to corrupt."""
    to_dev, n = list(sender.start(now)), 0
    while not sender.finished:
        to_srv: list[Message] = []
        for m in to_dev:
            m = coap.decode(coap.encode(m))
            if m.path == "c" and m.code == coap.POST:
                if n in drop:
                    m = Message(m.type, m.code, m.mid, m.token, m.options, bytes([m.payload[0] ^ 1]) + m.payload[1:])
                n += 1
            to_srv += rx.receive(m, now)
        to_dev = []
        for m in to_srv:
            to_dev += sender.receive(coap.decode(coap.encode(m)), now)
        if not to_dev and not sender.finished:
            now = min(d for d in (sender.next_deadline, rx.next_deadline) if d is not None)
            to_srv = rx.on_timeout(now)
            for m in to_srv:
                to_dev += sender.receive(m, now)
            to_dev += sender.on_timeout(now)
    return now


@pytest.mark.parametrize("dialect, fast", [("os", True), ("os", False), ("ccl", False)])
def test_firmware_transfer_lands_in_the_ota_slot(dialect: str, fast: bool) -> None:
    data = os.urandom(5000)
    flash = Flash()
    rx = OtaReceiver(flash, MessageIds(100), dialect=dialect)
    s = ota.OtaSender(data, MessageIds(7), 512, ota.DEST_FIRMWARE, 0, offer_fast=fast)
    run(s, rx)
    assert s.state == "done" and s.fast == fast and s.acked == s.count == 10
    assert flash.read(OTA_SLOT, 5000) == data
    # like the real code (both generations), the last chunk is stored whole, zero padding included
    assert flash.read(OTA_SLOT + 5000, 120) == bytes(120)
    assert rx.finished is not None and rx.finished.firmware


@pytest.mark.parametrize("fast", [True, False])
def test_corrupted_chunk_is_resent(fast: bool) -> None:
    data = os.urandom(4096)
    flash = Flash()
    rx = OtaReceiver(flash, MessageIds(1))  # Device OS stores only firmware
    s = ota.OtaSender(data, MessageIds(2), 256, ota.DEST_FIRMWARE, 0, offer_fast=fast)
    run(s, rx, drop={3})
    assert s.state == "done" and s.retries >= 1 and rx.bad_crc == 1
    assert flash.read(OTA_SLOT, 4096) == data
    assert rx.finished is not None and rx.finished.firmware


def test_device_os_erases_and_discards_a_file() -> None:
    """Device OS v0.4.9 (system_update.cpp): destination 1 erases the range, answers 2.04, stores nothing."""
    flash = Flash()
    flash.write(0x80000, b"old data")
    rx = OtaReceiver(flash, MessageIds(1))
    s = ota.OtaSender(os.urandom(2048), MessageIds(2), 512, ota.DEST_EXTERNAL, 0x80000)
    run(s, rx)
    assert s.state == "done" and s.acked == 4
    assert flash.read(0x80000, 2048) == b"\xff" * 2048


@pytest.mark.parametrize("dialect", ["ccl", "os"])
def test_save_begin_without_flasher_additions(dialect: str) -> None:
    """Stock 0.3.x gives POST /s no reply at all; Device OS starts a *firmware* update with defaults."""
    flash = Flash()
    rx = OtaReceiver(flash, MessageIds(1), dialect=dialect)
    out = rx.receive(ota.save_begin(5, b"\x07", address=0x80000, file_size=1000), 0.0)
    if dialect == "ccl":
        assert out == [] and not rx.updating
    else:
        assert rx.updating and rx.dest == ota.DEST_FIRMWARE and rx.base == OTA_SLOT
        assert [m.code for m in out] == [0, 0x44]


def test_save_begin_for_ccl_files() -> None:
    data = os.urandom(1500)
    flash = Flash()
    rx = OtaReceiver(flash, MessageIds(1), dialect="ccl", save_begin=True)
    s = ota.OtaSender(data, MessageIds(2), 512, ota.DEST_EXTERNAL, 0x90000, use_save_begin=True)
    run(s, rx)
    assert flash.read(0x90000, 1500) == data and s.state == "done"


def test_safe_rule_does_not_resend_an_in_flight_chunk_on_the_3s_timer() -> None:
    """A stalled link: the device's 3-s ChunkMissed(i) for the chunk in flight must not cause a duplicate."""
    ids = MessageIds(1)
    s = ota.OtaSender(os.urandom(2048), ids, 512)
    s.start(0.0)
    s.receive(ota.update_ready(50, s._begin.token, None), 0.0)  # type: ignore[union-attr]
    assert s._inflight is not None and s._inflight[0] == 0
    out = s.receive(ota.chunk_missed(51, [0]), 3.0)
    assert [m.path for m in out] == [""]  # only the ACK of the ChunkMissed, no resend
    out = s.receive(ota.chunk_missed(52, [0]), 6.0)  # still unanswered after 5 s: now resend
    assert [m.path for m in out] == ["", "c"]
    out = s.receive(ota.chunk_missed(53, [0]), 6.5)
    assert [m.path for m in out] == [""]


def test_rollback_restarts_at_the_devices_index() -> None:
    s = ota.OtaSender(os.urandom(4096), MessageIds(1), 512)
    s.start(0.0)
    out = s.receive(ota.update_ready(50, s._begin.token, None), 0.0)  # type: ignore[union-attr]
    for i in range(4):
        out = s.receive(ota.chunk_received(60 + i, out[-1].token, True), 0.0)
    assert s.acked == 4
    out = s.receive(ota.chunk_missed(70, [2]), 0.1)
    assert ota.parse_chunk(out[-1])[2] == s.chunk_bytes(2) and s.acked == 2


def test_device_rerequests_after_3s_and_resets_after_30s() -> None:
    flash = Flash()
    rx = OtaReceiver(flash, MessageIds(1), dialect="ccl", timing=DeviceTiming())
    rx.receive(ota.update_begin(1, b"\x01", flags=0, chunk_size=512, file_size=1024, destination=0, address=0), 0.0)
    assert rx.next_deadline == 3.0
    out = rx.on_timeout(3.0)
    assert ota.parse_chunk_missed(out[0]) == [0]
    for t in (6.0, 9.0, 12.0, 15.0, 18.0, 21.0, 24.0, 27.0):
        rx.on_timeout(t)
    assert rx.finished is None
    rx.on_timeout(30.0)
    assert rx.finished is not None and rx.finished.watchdog


def test_update_abort_and_limits() -> None:
    s = ota.OtaSender(b"x" * 100, MessageIds(1), 512)
    s.start(0.0)
    s.receive(Message(coap.ACK, coap.BAD_REQUEST, s._begin.mid), 0.0)  # type: ignore[union-attr]
    assert s.state == "failed" and "UpdateAbort" in (s.error or "")
    with pytest.raises(Exception, match="chunk size"):
        ota.OtaSender(b"x", MessageIds(1), 594)
    assert ota.chunk_wire_size(512) == 544 and ota.max_chunks(512) == 624
    assert ota.chunk_wire_size(512, indexed=False) + 18 <= 640


def test_fast_transfer_longer_than_the_token_space() -> None:
    """400 chunks: 1-byte tokens repeat; UpdateDone's answer is matched by its echoed message id."""
    data = os.urandom(400 * 256)
    flash = Flash()
    rx = OtaReceiver(flash, MessageIds(1))
    s = ota.OtaSender(data, MessageIds(2), 256, ota.DEST_FIRMWARE, 0, offer_fast=True)
    run(s, rx, drop={300})
    assert s.state == "done" and s.fast and s.acked == 400
    assert flash.read(OTA_SLOT, len(data)) == data


@pytest.mark.parametrize("drop", [set(), {3}, {300}])
def test_pipelined_fast_transfer_sends_everything_behind_update_begin(drop: set[int]) -> None:
    """Device OS: chunks and UpdateDone go out with UpdateBegin; the device reads them after its UpdateReady."""
    data = os.urandom(400 * 256)
    flash = Flash()
    rx = OtaReceiver(flash, MessageIds(1))
    s = ota.OtaSender(data, MessageIds(2), 256, ota.DEST_FIRMWARE, 0, offer_fast=True, pipeline=True)
    first = ota.OtaSender(data, MessageIds(2), 256, ota.DEST_FIRMWARE, 0, offer_fast=True, pipeline=True).start(0.0)
    assert [m.path for m in first] == ["u"] + ["c"] * 400 + ["u"]
    assert first[-1].code == coap.PUT and all(len(m.queries()) == 2 for m in first[1:-1])  # indexed chunks
    run(s, rx, drop=drop)
    assert s.state == "done" and s.fast and s.acked == 400 and s.retries == len(drop)
    assert flash.read(OTA_SLOT, len(data)) == data
    assert rx.finished is not None and rx.finished.firmware


def test_pipelined_transfer_refused_by_the_device_fails_with_its_reason() -> None:
    """A refusal (4.00) comes before the device reads any chunk: they are ignored, the slot is untouched."""
    flash = Flash()
    flash.write(OTA_SLOT, b"old")
    rx = OtaReceiver(flash, MessageIds(1))
    s = ota.OtaSender(b"x" * 1024, MessageIds(2), 512, ota.DEST_FIRMWARE, 0, offer_fast=True, pipeline=True)
    out = s.start(0.0)
    s.receive(Message(coap.ACK, coap.BAD_REQUEST, out[0].mid), 0.0)
    assert s.state == "failed" and "UpdateAbort" in (s.error or "")
    for m in out[1:]:  # what the device then reads: chunks and UpdateDone while not updating
        rx.receive(coap.decode(coap.encode(m)), 0.0)
    assert flash.read(OTA_SLOT, 3) == b"old"
    with pytest.raises(Exception, match="pipelined"):
        ota.OtaSender(b"x", MessageIds(1), 512, pipeline=True)  # only a fast-OTA UpdateBegin is pipelined


def test_pipelined_transfer_without_update_ready_fails_without_a_second_begin() -> None:
    s = ota.OtaSender(b"x" * 1024, MessageIds(2), 512, ota.DEST_FIRMWARE, 0, offer_fast=True, pipeline=True)
    out = s.start(0.0)
    s.receive(Message(coap.ACK, coap.EMPTY, out[0].mid), 0.0)  # ACKed: the erase runs
    assert s.on_timeout(s.timing.begin_s + 1) == [] and s.state == "failed" and "UpdateReady" in (s.error or "")
