"""The one loop that joins a sans-I/O byte-stream machine to a `Link`.

Used by the host (YMODEM sender) and by the virtual Core (YMODEM receiver), so both sides
enforce the machine's deadlines the same way: wait `machine.timeout_s` for useful input,
call `on_timeout()` when it passes. On any failure, including the handler's own, the
machine's cancel bytes (CAN x 8) go out before the error propagates, so the peer never
waits for a session that is already dead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from sparkflash.errors import LocalProtocolError, TransportError
from sparkflash.protocols.ymodem import NeedData
from sparkflash.transports.base import Link

__all__ = ["Machine", "drive"]


class Machine(Protocol):
    @property
    def timeout_s(self) -> float | None: ...

    @property
    def done(self) -> bool: ...

    def receive_data(self, data: bytes) -> None: ...

    def data_to_send(self) -> bytes: ...

    def next_event(self) -> Any: ...

    def on_timeout(self) -> None: ...

    def cancel(self) -> None: ...

    def take_rest(self) -> bytes: ...


def drive(link: Link, machine: Machine, on_event: Callable[[Any], None], *, initial: bytes = b"") -> bytes:
    """Run until `machine.done`. `initial` = bytes already read past a command's reply line;
    returns the bytes read past the session's end (the peer's next text)."""
    if initial:
        machine.receive_data(initial)
    deadline: float | None = None
    try:
        while True:
            ev = machine.next_event()
            busy = not isinstance(ev, NeedData)
            if busy:
                on_event(ev)  # before the flush: a handler that fails replaces the ACK by CAN
            out = machine.data_to_send()
            if out:
                link.write(out)
                deadline = None  # we said something: a fresh wait for the answer
            if busy:
                deadline = None
                continue
            if machine.done:
                return machine.take_rest()
            now = time.monotonic()
            wait = machine.timeout_s
            if wait is None:
                raise LocalProtocolError(f"{type(ev).__name__}: the event handler left the session waiting "
                                         "for a decision (accept/reject)")
            if deadline is None:
                deadline = now + wait
            chunk = link.read(4096, max(0.0, deadline - now))
            if chunk:
                machine.receive_data(chunk)
            elif deadline is not None and time.monotonic() >= deadline:
                deadline = None
                machine.on_timeout()
    except BaseException:
        machine.cancel()
        try:
            out = machine.data_to_send()
            if out:
                link.write(out)
        except TransportError:
            pass
        raise
