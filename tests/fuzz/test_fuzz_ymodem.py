"""YMODEM receiver and sender fed hostile bytes: they end in events or one SparkflashError.

Three properties. Arbitrary byte streams (weighted toward the protocol's control bytes
and well-formed blocks, so the fuzzer gets past the first byte) into each machine, with
timeouts and accept/reject decisions interleaved; and a sender <-> receiver pair over a
link that flips, drops, inserts and duplicates bytes, where a file the receiver reports
complete (received == announced size) must hold exactly the sent bytes. Every loop has a
hard cap: running into it is a hang and fails the test.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparkflash.errors import LocalProtocolError, SparkflashError
from sparkflash.protocols import ymodem as y

pytestmark = pytest.mark.fuzz

CONTROL = st.sampled_from([y.SOH, y.STX, y.EOT, y.ACK, y.NAK, y.CAN, y.CRC_START, 0x00, 0xFF])
CONTROL_BYTES = st.lists(CONTROL, max_size=4).map(bytes)


@st.composite
def blocks(draw: st.DrawFn) -> bytes:
    """A well-formed block (header or data), sometimes with one byte changed afterwards."""
    seq = draw(st.integers(0, 255))
    size = draw(st.sampled_from([128, 1024]))
    if seq == 0 and draw(st.booleans()):
        name = draw(st.text(max_size=8)).replace("\0", "")
        length = draw(st.integers(0, 5000)).__str__() if draw(st.booleans()) else draw(st.text(max_size=6))
        text = name.encode("utf-8", "replace") + b"\0" + length.encode("utf-8", "replace") + b" "
        payload = text[:size].ljust(size, b"\0")
    else:
        payload = draw(st.binary(min_size=0, max_size=size)).ljust(size, bytes([y.SUB]))
    frame = bytearray(y.encode_block(seq, payload))
    if draw(st.booleans()):
        i = draw(st.integers(0, len(frame) - 1))
        frame[i] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        frame = frame[: draw(st.integers(0, len(frame)))]
    return bytes(frame)


chunks = st.one_of(st.binary(max_size=64), CONTROL_BYTES, blocks())
# one step of the peer: ("data", bytes) | ("timeout", None) | ("decide", accept?)
steps = st.lists(st.one_of(st.tuples(st.just("data"), chunks), st.tuples(st.just("timeout"), st.none()),
                           st.tuples(st.just("decide"), st.booleans())), max_size=30)


def _drain(machine: y.Sender | y.Receiver, budget: int) -> list[object]:
    """next_event() until NEED_DATA; at most one event per buffered byte (+1), else a hang."""
    events: list[object] = []
    for _ in range(budget + 2):
        ev = machine.next_event()
        if isinstance(ev, y.NeedData):
            return events
        events.append(ev)
        if isinstance(ev, y.FileHeader):
            return events  # the owner must decide before anything else
    raise AssertionError(f"{type(machine).__name__}.next_event() produced more than {budget + 2} events "
                         f"from {budget} bytes")


def _check_receiver_events(events: list[object], got: dict[str, int]) -> None:
    for ev in events:
        assert isinstance(ev, (y.FileHeader, y.FileData, y.FileEnd, y.BatchEnd)), ev
        if isinstance(ev, y.FileHeader):
            got["received"], got["size"] = 0, -1 if ev.size is None else ev.size
        elif isinstance(ev, y.FileData):
            assert ev.offset == got["received"], (ev.offset, got)
            got["received"] += len(ev.data)
            assert got["size"] < 0 or got["received"] <= got["size"], got


@given(steps)
def test_receiver_takes_any_bytes(script: list[tuple[str, object]]) -> None:
    r = y.Receiver(start_tries=4)
    got = {"received": 0, "size": -1}
    try:
        for kind, arg in script:
            if r.state in ("done", "failed"):
                break
            if kind == "data":
                assert isinstance(arg, bytes)
                r.receive_data(arg)
            elif kind == "timeout":
                r.on_timeout()
            elif r.state == "accept":
                r.accept() if arg else r.reject()
            _check_receiver_events(_drain(r, len(r._in)), got)
            out = r.data_to_send()
            assert set(out) <= {y.ACK, y.NAK, y.CRC_START, y.CAN}, out
    except SparkflashError:
        assert r.state == "failed"


sender_chunks = st.one_of(CONTROL_BYTES, st.binary(max_size=16))
sender_steps = st.lists(st.one_of(st.tuples(st.just("data"), sender_chunks),
                                  st.tuples(st.just("timeout"), st.none())), max_size=60)


def test_sender_refuses_an_empty_file() -> None:
    """Issue #19: a Spark receiver reports a 0-byte file as a failed transfer; refuse it up front."""
    with pytest.raises(LocalProtocolError, match="empty file"):
        y.Sender("fw.bin", b"")


@given(st.binary(min_size=1, max_size=3000), st.booleans(), st.sampled_from([128, 1024]), sender_steps)
def test_sender_takes_any_bytes(data: bytes, wait_for_c: bool, block_size: int,
                                script: list[tuple[str, object]]) -> None:
    s = y.Sender("fw.bin", data, block_size=block_size, wait_for_c=wait_for_c)
    last = 0
    try:
        for kind, arg in script:
            if s.state in ("done", "failed"):
                break
            if kind == "data":
                assert isinstance(arg, bytes)
                s.receive_data(arg)
            else:
                s.on_timeout()
            for ev in _drain(s, len(s._in)):
                assert isinstance(ev, (y.Progress, y.Finished)), ev
                if isinstance(ev, y.Progress):
                    assert last <= ev.done <= ev.total == len(data), (last, ev)
                    last = ev.done
            out = s.data_to_send()
            assert len(out) <= 2 * (3 + 1024 + 2) + len(y.CANCEL), len(out)
    except SparkflashError:
        assert s.state == "failed"


# -- a sender and a receiver over a hostile link ---------------------------------------------
mutation = st.tuples(
    st.sampled_from(["s2r", "r2s"]),  # direction
    st.integers(0, 40),  # which write in that direction
    st.sampled_from(["flip", "drop_byte", "insert", "drop_write", "repeat", "cut"]),
    st.integers(0, 2**16),  # position
    st.integers(1, 255),  # xor mask / inserted byte
)


def _mutate(data: bytes, op: str, pos: int, arg: int) -> bytes:
    if not data:
        return data
    i = pos % len(data)
    if op == "flip":
        return data[:i] + bytes([data[i] ^ arg]) + data[i + 1 :]
    if op == "drop_byte":
        return data[:i] + data[i + 1 :]
    if op == "insert":
        return data[:i] + bytes([arg]) + data[i:]
    if op == "drop_write":
        return b""
    if op == "repeat":
        return data + data
    return data[:i]  # cut


class Clock:
    """Virtual time: each side's deadline restarts when it speaks or reports an event."""

    def __init__(self) -> None:
        self.now = 0.0
        self.deadline: dict[str, float | None] = {"s": None, "r": None}

    def touch(self, side: str, timeout: float | None) -> None:
        self.deadline[side] = None if timeout is None else self.now + timeout


MAX_STEPS = 3000


@dataclass
class PairRun:
    sender: y.Sender
    receiver: y.Receiver
    got: bytes
    size: int | None
    completed: bool  # the receiver saw EOT with every announced byte


def run_pair(data: bytes, mutations: list[tuple[str, int, str, int, int]]) -> PairRun:
    """Sender and receiver over a link that applies `mutations` (direction, nth write, op,
    position, argument), with virtual time; an AssertionError if it does not end."""
    plan = {(d, n): (op, pos, arg) for d, n, op, pos, arg in mutations}
    count = {"s2r": 0, "r2s": 0}
    s = y.Sender("fw.bin", data, timeouts=y.SenderTimeouts(start=20.0))
    r = y.Receiver(start_tries=4)
    clock = Clock()
    clock.touch("s", s.timeout_s)
    clock.touch("r", r.timeout_s)
    got = bytearray()
    completed = False  # the receiver saw EOT with every announced byte
    size: int | None = None

    def send(direction: str, out: bytes, to: y.Sender | y.Receiver) -> None:
        op = plan.get((direction, count[direction]))
        count[direction] += 1
        if op is not None:
            out = _mutate(out, *op)
        if to.state not in ("done", "failed"):
            to.receive_data(out)

    def alive(m: y.Sender | y.Receiver) -> bool:
        return m.state not in ("done", "failed")

    for _ in range(MAX_STEPS):
        if not alive(s) and not alive(r):
            break
        moved = False
        try:
            if alive(s):
                for _ev in _drain(s, len(s._in)):
                    moved = True
                    clock.touch("s", s.timeout_s)
        except SparkflashError:
            pass
        if out := s.data_to_send():
            send("s2r", out, r)
            clock.touch("s", s.timeout_s)
            moved = True
        try:
            if alive(r):
                for ev in _drain(r, len(r._in)):
                    moved = True
                    if isinstance(ev, y.FileHeader):
                        size, completed = ev.size, False
                        got.clear()
                        r.accept()
                    elif isinstance(ev, y.FileData):
                        assert ev.offset == len(got)
                        got += ev.data
                    elif isinstance(ev, y.FileEnd):
                        completed = ev.received == ev.size
                clock.touch("r", r.timeout_s)
        except SparkflashError:
            pass
        if out := r.data_to_send():
            send("r2s", out, s)
            clock.touch("r", r.timeout_s)
            moved = True
        if moved:
            continue
        # idle: let virtual time pass to the nearer deadline
        due = [(t, side) for side, t in clock.deadline.items() if t is not None
               and alive(s if side == "s" else r)]
        if not due:
            break
        clock.now, side = min(due)
        m: y.Sender | y.Receiver = s if side == "s" else r
        try:
            m.on_timeout()
        except SparkflashError:
            pass
        clock.touch(side, m.timeout_s if alive(m) else None)
    else:
        raise AssertionError(f"no end after {MAX_STEPS} steps: sender {s.state}, receiver {r.state}")
    return PairRun(s, r, bytes(got), size, completed)


@given(st.binary(min_size=1, max_size=2500), st.lists(mutation, max_size=6))
def test_pair_over_a_faulty_link_never_accepts_wrong_bytes(data: bytes, mutations: list[tuple[str, int, str, int, int]]) -> None:
    run = run_pair(data, mutations)
    if run.completed:
        assert run.size == len(data) and run.got == data, "a file the receiver called complete holds wrong bytes"
    if not mutations:  # a clean link: the whole file arrives and both sides finish
        assert run.sender.done and run.receiver.done and run.completed and run.got == data


def test_sender_finishes_only_when_the_receiver_has_the_whole_file() -> None:
    """Found by fuzzing: a block's STX flipped into EOT used to end the file early (lrzsz
    refuses an EOT that bytes follow; we refuse one before the announced size)."""
    data = bytes(range(256)) * 12
    run = run_pair(data, [("s2r", 2, "flip", 0, y.STX ^ y.EOT)])  # the 2nd data block's mark becomes EOT
    assert run.sender.state == "failed" or (run.completed and run.got == data), \
        f"sender {run.sender.state} after the receiver got {len(run.got)} of {len(data)} bytes"
