"""DfuSe host and Core device machines, paired in memory: golden bytes, quirks, misbehaving devices."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkflash.errors import DeviceGone, LocalProtocolError, ProtocolError, RemoteProtocolError
from sparkflash.protocols.dfuse import (
    IN,
    OUT,
    ControlRequest,
    DfuseHost,
    DfuStatus,
    Done,
    EndpointStalled,
    Operation,
    Req,
    State,
    Wait,
    encode_erase,
    encode_set_address,
    encode_status,
    parse_status,
)
from sparkflash.protocols.dfuse_device import BUGGY_STATE, DfuseDevice
from sparkflash.virtual.nor_flash import NorFlash


class Pair:
    """Host operations run directly against a device machine; Waits are recorded, not slept."""

    def __init__(self, device: Any) -> None:
        self.device, self.host = device, DfuseHost()
        self.sent: list[ControlRequest] = []
        self.waits: list[float] = []

    def run(self, op: Operation) -> Any:
        ev = op.next_event()
        while not isinstance(ev, Done):
            if isinstance(ev, Wait):
                self.waits.append(ev.seconds)
                ev = op.on_reply(b"")
                continue
            self.sent.append(ev)
            try:
                reply = self.device.handle(ev)
            except DeviceGone as e:
                ev = op.on_gone(e)
                continue
            ev = op.on_stall(EndpointStalled("stall")) if reply is None else op.on_reply(reply)
        return ev.value


@pytest.fixture
def core(tmp_path: Path) -> Iterator[DfuseDevice]:
    internal = NorFlash(tmp_path / "i.bin", 0x08000000, 0x20000, 0x400)
    external = NorFlash(tmp_path / "e.bin", 0, 0x200000, 0x1000)
    internal.program(0x08000000, b"BOOT" * 4)
    internal.protected = ((0x08000000, 0x08004000),)  # as the option bytes do after the factory
    yield DfuseDevice(internal, external)
    internal.close()
    external.close()


def test_golden_bytes() -> None:
    assert encode_set_address(0x08005000) == bytes.fromhex("2100500008")
    assert encode_erase(0x00080000) == bytes.fromhex("4100000800")
    assert parse_status(bytes.fromhex("00 1e0000 04 00")) == DfuStatus(0, 30, State.DNBUSY, 0)
    assert encode_status(DfuStatus(0, 0x123456, 5)) == bytes.fromhex("00 563412 05 00")
    with pytest.raises(RemoteProtocolError, match="6"):
        parse_status(b"\0\0\0")


def test_write_read_and_the_cores_poll_timeouts(core: DfuseDevice) -> None:
    p = Pair(core)
    p.run(p.host.start())
    p.run(p.host.erase(0x80000))
    p.run(p.host.set_address(0x80000))
    p.run(p.host.download(2, b"A" * 1024))
    p.run(p.host.download(3, b"B" * 100))  # block 3 = pointer + 1024: the pointer did not move
    assert p.run(p.host.read(0x80000, 1124)) == b"A" * 1024 + b"B" * 100
    assert p.waits[:4] == [0.020, 0.030, 0.030, 0.030]  # SPI: erase 20 ms, the rest 30 ms
    p.run(p.host.set_address(0x08005000))
    p.run(p.host.erase(0x08005000))
    # the timeout follows the pointer *before* the command runs: SPI for the Set Address, then internal
    assert p.waits[-2:] == [0.030, 0.050]
    assert p.host.state == State.DNLOAD_IDLE
    assert [r for r in p.sent if r.bRequest == Req.UPLOAD][0].wValue == 2


def test_read_skips_blocks_by_block_number(core: DfuseDevice) -> None:
    """skip() names the offset to read next: the block number places each UPLOAD, so the
    skipped blocks are never asked for (an offset inside a block starts at that block)."""
    core.flash["external"].program(0x80000, bytes(range(256)) * 24)  # 6 KiB
    p = Pair(core)
    p.run(p.host.start())
    seen: list[int] = []

    def skip(off: int, chunk: bytes) -> int | None:
        seen.append(off)
        return 0x1000 + 0x10 if off == 0 else None

    got = p.run(p.host.read(0x80000, 0x1800, skip=skip))
    assert [r.wValue for r in p.sent if r.bRequest == Req.UPLOAD] == [2, 6, 7]
    assert seen == [0, 0x1000, 0x1400]
    assert got[:0x400] == got[0x1000:0x1400] == bytes(range(256)) * 4 and got[0x400:0x1000] == bytes(0xC00)


def test_erase_moves_the_pointer(core: DfuseDevice) -> None:
    p = Pair(core)
    p.run(p.host.start())
    p.run(p.host.set_address(0x90000))
    p.run(p.host.erase(0x80000))
    p.run(p.host.download(2, b"Z" * 4))  # without a new Set Address this lands at the erased address
    assert core.flash["external"].read(0x80000, 4) == b"ZZZZ"
    assert core.flash["external"].read(0x90000, 4) == b"\xff" * 4


def test_errors_are_never_reported_so_only_read_back_tells(core: DfuseDevice) -> None:
    p = Pair(core)
    p.run(p.host.start())
    before = p.run(p.host.read(0x08000000, 16))
    p.run(p.host.erase(0x08000000))  # protected bootloader page: "OK", nothing happens
    p.run(p.host.set_address(0x08000000))
    p.run(p.host.download(2, b"\0" * 16))
    p.run(p.host.set_address(0x30000000))  # no memory there: silently dropped
    p.run(p.host.download(2, b"\0" * 16))
    p.run(p.host.command(b"\x41", "mass erase"))  # unsupported: ignored, still OK
    assert p.host.last_status is not None and p.host.last_status.status == 0
    assert p.run(p.host.read(0x08000000, 16)) == before != b"\xff" * 16


def test_get_commands_and_internal_word_padding(core: DfuseDevice) -> None:
    assert core.handle(ControlRequest(IN, Req.UPLOAD, 0, 0, length=3)) == bytes([0x00, 0x21, 0x41])
    p = Pair(core)
    p.run(p.host.start())
    p.run(p.host.erase(0x08005000))
    p.run(p.host.set_address(0x08005000))
    p.run(p.host.download(2, b"\x01\x02\x03\x04\x05"))
    assert core.flash["internal"].read(0x08005000, 8) == bytes([1, 2, 3, 4, 5, 0xFF, 0xFF, 0xFF])


def test_clrstatus_outside_error_causes_error(core: DfuseDevice) -> None:
    core.handle(ControlRequest(OUT, Req.CLRSTATUS))
    assert parse_status(core.handle(ControlRequest(IN, Req.GETSTATUS, length=6)) or b"").state == State.ERROR
    p = Pair(core)
    p.run(p.host.start())
    assert p.host.state == State.IDLE
    assert [r.bRequest for r in p.sent] == [Req.GETSTATUS, Req.CLRSTATUS, Req.GETSTATUS]


@pytest.mark.parametrize("setup", ["dnload-idle", "upload-idle", "buggy-15"])
def test_start_recovers_from_what_a_previous_host_left(core: DfuseDevice, setup: str) -> None:
    if setup == "dnload-idle":
        core.handle(ControlRequest(OUT, Req.DNLOAD, 0, 0, encode_set_address(0)))
        core.handle(ControlRequest(IN, Req.GETSTATUS, length=6))
        core.handle(ControlRequest(IN, Req.GETSTATUS, length=6))
    elif setup == "upload-idle":
        core.handle(ControlRequest(IN, Req.UPLOAD, 2, 0, length=16))
    else:
        assert core.handle(ControlRequest(IN, Req.UPLOAD, 1, 0, length=16)) is None
        assert core.state == BUGGY_STATE  # the Core's bug: ABORT does not fix it
    p = Pair(core)
    p.run(p.host.start())
    assert core.state == State.IDLE and p.host.state == State.IDLE


def test_host_refuses_what_the_core_would_stall_or_break(core: DfuseDevice) -> None:
    p = Pair(core)
    p.run(p.host.start())
    p.run(p.host.set_address(0x80000))
    with pytest.raises(LocalProtocolError, match="dfuIDLE or dfuUPLOAD-IDLE"):
        p.run(p.host.upload(2, 16))
    with pytest.raises(LocalProtocolError, match="block"):
        p.run(p.host.upload(1, 16))
    with pytest.raises(LocalProtocolError, match="bytes"):
        p.run(p.host.download(2, bytes(1025)))
    assert not any(r.bRequest == Req.UPLOAD for r in p.sent)


def test_leave_answered_with_dnload_idle(core: DfuseDevice) -> None:
    p = Pair(core)
    p.run(p.host.start())
    st = p.run(p.host.leave())
    assert st.state == State.DNLOAD_IDLE and core.reset_requested
    last_two = p.sent[-2:]
    assert (last_two[0].bRequest, last_two[0].wValue, last_two[0].data) == (Req.DNLOAD, 2, b"")


class Scripted:
    """A misbehaving device: GETSTATUS answers come from `statuses`, everything else is ACKed."""

    def __init__(self, statuses: list[DfuStatus], gone_on: Callable[[ControlRequest], bool] = lambda r: False):
        self.statuses = statuses
        self.gone_on = gone_on
        self.seen: list[ControlRequest] = []

    def handle(self, req: ControlRequest) -> bytes | None:
        self.seen.append(req)
        if self.gone_on(req):
            raise DeviceGone("unplugged")
        if req.bRequest == Req.GETSTATUS:
            return encode_status(self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0])
        return b""


def test_command_not_busy_is_a_wrong_state() -> None:
    p = Pair(Scripted([DfuStatus(0, 0, State.DNLOAD_IDLE)]))
    with pytest.raises(RemoteProtocolError, match="wrong state after command"):
        p.run(p.host.set_address(0))


@pytest.mark.parametrize("poll_ms", [0, 1, 500])
def test_device_stuck_busy(poll_ms: int) -> None:
    p = Pair(Scripted([DfuStatus(0, poll_ms, State.DNBUSY)]))
    with pytest.raises(RemoteProtocolError, match="stuck"):
        p.run(p.host.download(2, b"x"))
    assert sum(p.waits) <= 60.5


def test_error_state_is_cleared_then_reported() -> None:
    dev = Scripted([DfuStatus(0, 5, State.DNBUSY), DfuStatus(0x03, 0, State.ERROR)])
    p = Pair(dev)
    with pytest.raises(RemoteProtocolError, match="dfuERROR/errWRITE"):
        p.run(p.host.download(2, b"x"))
    assert dev.seen[-1].bRequest == Req.CLRSTATUS and p.waits == [0.005]


def test_leave_tolerates_a_vanishing_device() -> None:
    p = Pair(Scripted([DfuStatus(0, 0, State.IDLE)], gone_on=lambda r: r.bRequest == Req.GETSTATUS))
    assert p.run(p.host.leave()) is None


status_st = st.builds(DfuStatus, st.integers(0, 0x0F), st.sampled_from([0, 1, 30, 3000]),
                      st.sampled_from([*range(17), 4, 4, 5]), st.just(0))


@settings(max_examples=200, deadline=None)
@given(st.lists(status_st, min_size=1, max_size=12), st.sampled_from(["start", "erase", "download", "read", "leave"]))
def test_host_against_random_device_answers(statuses: list[DfuStatus], which: str) -> None:
    """Whatever a broken device answers, the host finishes or raises a ProtocolError, within bounds."""
    dev = Scripted(list(statuses))
    p = Pair(dev)
    h = p.host
    op = {"start": h.start, "erase": lambda: h.erase(0x1000), "download": lambda: h.download(2, b"x"),
          "read": lambda: h.read(0x1000, 10), "leave": h.leave}[which]()
    try:
        p.run(op)
    except ProtocolError:
        pass
    assert len(dev.seen) < 2100 and sum(p.waits) <= 60.5
