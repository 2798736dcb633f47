"""The DfuSe host against a misbehaving device, and the virtual Core's DfuSe side against any host.

Host: a correct device model (protocols.dfuse_device on in-memory flash) answers every
request except those the fuzzer picks, which get an arbitrary GETSTATUS (any state, status
and bwPollTimeout), bytes of the wrong length, a short or long UPLOAD, a stall or a
vanished device. Each operation of a deploy (start, erase, set address, download, read
back, leave) must end in Done or one SparkflashError within a bounded number of requests
and of waited seconds, and a read returns exactly the bytes asked for.
Device: any sequence of control requests gets an answer or a stall, never an exception.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparkflash.errors import DeviceGone, SparkflashError
from sparkflash.protocols import dfuse as d
from sparkflash.protocols.dfuse_device import STALL, DfuseDevice
from sparkflash.virtual.nor_flash import NorFlash

pytestmark = pytest.mark.fuzz

# bounds a deploy loop may rely on: requests per operation and seconds waited per operation
MAX_REQUESTS = 2 * d.MAX_BUSY_POLLS + d.MAX_ZERO_POLLS + 64
MAX_WAIT_S = d.MAX_BUSY_MS / 1000


class RamFlash:
    """Erase-to-0xFF, AND-programming flash in memory: the device model's backing store."""

    def __init__(self, base: int, size: int, sector: int) -> None:
        self.base, self.size, self.sector = base, size, sector
        self.mem = bytearray(b"\xff" * size)

    def read(self, address: int, length: int) -> bytes:
        o = address - self.base
        return bytes(self.mem[o : o + length])

    def erase_sector(self, address: int) -> bool:
        o = (address - self.base) // self.sector * self.sector
        self.mem[o : o + self.sector] = b"\xff" * self.sector
        return True

    def program(self, address: int, data: bytes) -> None:
        o = address - self.base
        self.mem[o : o + len(data)] = bytes(a & b for a, b in zip(self.mem[o : o + len(data)], data, strict=False))


statuses = st.builds(lambda status, poll, state, string: d.encode_status(d.DfuStatus(status, poll, state, string)),
                     st.integers(0, 255) | st.sampled_from(list(d.Status)),
                     st.sampled_from([0, 0, 1, 25, 50, 0xFFFFFF]) | st.integers(0, 0xFFFFFF),
                     st.sampled_from(list(d.State)) | st.integers(0, 255), st.integers(0, 255))
# what the fuzzed device does instead of the right answer
faults = st.one_of(
    st.tuples(st.just("status"), statuses),
    st.tuples(st.just("raw"), st.binary(max_size=12)),
    st.tuples(st.just("short"), st.integers(0, 1023)),
    st.tuples(st.just("stall"), st.none()),
    st.tuples(st.just("gone"), st.none()),
    st.tuples(st.just("sticky"), statuses),  # from here on every GETSTATUS is this
)


class Misbehaving:
    """The device model, overridden at the requests the fuzzer chose."""

    def __init__(self, plan: dict[int, tuple[str, Any]], long_uploads: bytes = b"") -> None:
        self.dev = DfuseDevice(RamFlash(0x08000000, 0x20000, 0x400), RamFlash(0, 0x200000, 0x1000), poll=True)
        self.plan, self.n, self.sticky = plan, 0, None
        self.long_uploads = long_uploads  # appended to every UPLOAD reply (the socket transport allows it)

    def control(self, req: d.ControlRequest) -> bytes | None:
        """IN data, b"" for OUT, None for a stall; raises DeviceGone."""
        fault = self.plan.get(self.n)
        self.n += 1
        real = self.dev.handle(req)
        self.dev.take_poll_ms()
        if fault is not None and fault[0] == "sticky":
            self.sticky = fault[1]
        if self.sticky is not None and req.bRequest == d.Req.GETSTATUS:
            return bytes(self.sticky)
        if self.long_uploads and req.bRequest == d.Req.UPLOAD and real is not None:
            return real + self.long_uploads
        if fault is None:
            return real
        kind, arg = fault
        if kind in ("status", "raw"):  # USB delivers at most wLength bytes of an IN reply
            return bytes(arg)[: req.length] if req.is_in else bytes(arg)
        if kind == "short":
            return (real or b"")[: arg % (len(real or b"") + 1)]
        if kind == "stall":
            return STALL
        raise DeviceGone("USB device gone (fuzzed)")


def drive(op_factory: Any, device: Misbehaving) -> Any:
    """Run one operation as deploy/dfu_session does, with hard caps on requests and waits."""
    op = op_factory()
    ev, requests, waited = op.next_event(), 0, 0.0
    while not isinstance(ev, d.Done):
        if isinstance(ev, d.Wait):
            assert 0 <= ev.seconds, ev
            waited += ev.seconds
            assert waited <= MAX_WAIT_S, f"operation waited {waited:g} s (more than {MAX_WAIT_S:g})"
            ev = op.on_reply(b"")
            continue
        assert isinstance(ev, d.ControlRequest), ev
        requests += 1
        assert requests <= MAX_REQUESTS, f"operation still running after {MAX_REQUESTS} requests"
        assert ev.wLength <= d.MAX_TRANSFER and len(ev.data) <= d.MAX_TRANSFER, ev
        try:
            reply = device.control(ev)
        except DeviceGone as e:
            ev = op.on_gone(e)
            continue
        ev = op.on_stall(d.EndpointStalled(f"stall {ev.bRequest}")) if reply is None else op.on_reply(reply)
    return ev.value


plans = st.dictionaries(st.integers(0, 40), faults, max_size=6)
payloads = st.binary(min_size=1, max_size=2100)
targets = st.sampled_from([0x08005000, 0x00080000, 0x001FFC00])


@given(plans, payloads, targets)
def test_host_survives_a_misbehaving_device(plan: dict[int, tuple[str, Any]], data: bytes, address: int) -> None:
    deploy_against(Misbehaving(plan), data, address, clean=not plan)


@given(plans, payloads, targets, st.binary(min_size=1, max_size=8))
def test_host_refuses_long_upload_replies(plan: dict[int, tuple[str, Any]], data: bytes, address: int,
                                          extra: bytes) -> None:
    # found by this fuzzer: read() used to return the extra bytes (the socket transport passes them on)
    assert deploy_against(Misbehaving(plan, long_uploads=extra), data, address, clean=False) is None


def deploy_against(device: Misbehaving, data: bytes, address: int, *, clean: bool) -> bytes | None:
    """start, erase, set address, download, read back, leave: what deploy/dfu.py does per region."""
    host = d.DfuseHost()
    outcomes: list[str] = []
    blocks = [data[i : i + d.MAX_TRANSFER] for i in range(0, len(data), d.MAX_TRANSFER)]
    steps = [lambda: host.start(), lambda: host.erase(address), lambda: host.set_address(address)]
    steps += [lambda i=i, b=b: host.download(2 + i, b, address + i * d.MAX_TRANSFER) for i, b in enumerate(blocks)]
    for step in steps:
        try:
            drive(step, device)
            outcomes.append("ok")
        except SparkflashError:
            outcomes.append("error")
    try:
        back = drive(lambda: host.read(address, len(data)), device)
    except SparkflashError:
        back = None
    if back is not None:
        assert isinstance(back, bytes) and len(back) == len(data), \
            f"read of {len(data)} bytes returned {len(back)}"
    if clean:  # a well-behaved device: everything works and reads back what was written
        assert outcomes == ["ok"] * len(steps) and back == data
    try:
        drive(lambda: host.leave(), device)
    except SparkflashError:
        pass
    return back


requests = st.builds(
    d.ControlRequest,
    st.sampled_from([d.OUT, d.IN]) | st.integers(0, 255),
    st.sampled_from(list(d.Req)) | st.integers(0, 255),
    st.integers(0, 5) | st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.one_of(st.binary(max_size=8), st.builds(d.encode_set_address, st.integers(0, 2**32 - 1)),
              st.builds(d.encode_erase, st.integers(0, 2**32 - 1)), st.binary(min_size=1020, max_size=1030)),
    st.integers(0, 1100),
)


def _upload_at(address: int, block: int, length: int) -> list[d.ControlRequest]:
    """Set Address, two GETSTATUS, ABORT, UPLOAD: the sequence that reaches a read at `address`."""
    status = d.ControlRequest(d.IN, d.Req.GETSTATUS, length=6)
    return [d.ControlRequest(d.OUT, d.Req.DNLOAD, 0, 0, d.encode_set_address(address)), status, status,
            d.ControlRequest(d.OUT, d.Req.ABORT), d.ControlRequest(d.IN, d.Req.UPLOAD, block, 0, length=length)]


def _answer_all(reqs: list[d.ControlRequest], internal: NorFlash, external: NorFlash) -> bytes | None:
    """Every request answered (data or a stall); returns the last answer."""
    dev = DfuseDevice(internal, external, poll=False)
    reply = None
    for req in reqs:
        reply = dev.handle(req)
        assert reply is STALL or isinstance(reply, bytes)
        if reply is not None and req.bmRequestType == d.IN:
            assert len(reply) <= max(req.length, 6), (req, len(reply))
    return reply


def _flashes(tmp: str) -> tuple[NorFlash, NorFlash]:
    internal = NorFlash(Path(tmp) / "int.bin", 0x08000000, 0x20000, 0x400, protected=((0x08000000, 0x08005000),))
    external = NorFlash(Path(tmp) / "ext.bin", 0, 0x200000, 0x1000, protected=((0x2000, 0x3000),))
    return internal, external


addresses = st.sampled_from([0x08000000, 0x08005000, 0x0801FC00, 0x08020000, 0x08030000, 0, 0x1FFC00, 0x200000,
                             0x3FFFFFF, 0x10000000]) | st.integers(0, 2**32 - 1)
set_address = st.builds(lambda a: [d.ControlRequest(d.OUT, d.Req.DNLOAD, 0, 0, d.encode_set_address(a))], addresses)
uploads = st.builds(_upload_at, addresses, st.integers(0, 70) | st.integers(0, 0xFFFF), st.integers(0, 1100))
sequences = st.lists(st.one_of(requests.map(lambda r: [r]), set_address, uploads), max_size=20).map(
    lambda parts: [r for part in parts for r in part])


def test_virtual_device_answers_any_request() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        internal, external = _flashes(tmp)

        @given(sequences)
        def run(reqs: list[d.ControlRequest]) -> None:
            _answer_all(reqs, internal, external)

        try:
            run()
        finally:
            internal.close()
            external.close()


def test_virtual_device_upload_past_internal_flash() -> None:
    """Found by this fuzzer: NorFlash.read(0x08030000, 0) raised ValueError; now 0xFF, as the Core."""
    with tempfile.TemporaryDirectory() as tmp:
        internal, external = _flashes(tmp)
        try:
            assert _answer_all(_upload_at(0x08030000, 2, 16), internal, external) == b"\xff" * 16
        finally:
            internal.close()
            external.close()
