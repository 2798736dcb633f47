"""One opened DfuSe device: reads its descriptors, selects alts, and drives the host machine.

This is the only loop between `protocols.dfuse` and a control pipe: it sends each
request, lets each bwPollTimeout pass (time.sleep), and feeds replies back. It also
turns `--device` strings into pipes (virtual:DIR, usb:BUS-PORT, VID:PID).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkflash.errors import DeviceGone, InputError
from sparkflash.protocols.dfu_layout import Layout, parse_layout
from sparkflash.protocols.dfuse import ControlRequest, DfuseHost, Done, EndpointStalled, Operation, Req, SkipFn, Wait
from sparkflash.protocols.usb_descriptors import (
    DT_CONFIG,
    DT_DEVICE,
    DT_STRING,
    GET_DESCRIPTOR,
    SET_INTERFACE,
    parse_config,
    parse_device,
    parse_string,
)
from sparkflash.transports.control_pipe import ControlPipe

__all__ = ["DeviceInfo", "DfuSession", "open_pipes", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 5.0  # per control transfer, as dfu-util
LANG_EN_US = 0x0409


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    vendor: int
    product: int
    bcd_device: int
    manufacturer: str
    product_name: str
    serial: str
    alt_names: dict[int, str]  # alt setting -> interface string (the DfuSe layout)
    transfer_size: int

    def lines(self) -> list[str]:
        """dfu-util -l style, one line per alt setting."""
        return [f'Found DFU: [{self.vendor:04x}:{self.product:04x}] ver={self.bcd_device:04x}, path="{self.name}", '
                f'alt={alt}, name="{text}", serial="{self.serial}"' for alt, text in sorted(self.alt_names.items())]


class DfuSession:
    def __init__(self, pipe: ControlPipe, *, timeout: float = DEFAULT_TIMEOUT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.pipe, self.timeout, self._sleep = pipe, timeout, sleep
        self.counts: Counter[str] = Counter()  # requests sent, by kind (tests and benchmarks read it)
        self.waited_s = 0.0
        self.info = self._describe()
        self.host = DfuseHost(0, self.info.transfer_size)
        self.alt: int | None = None

    # -- standard requests --------------------------------------------------------
    def _descriptor(self, kind: int, index: int, length: int, lang: int = 0) -> bytes:
        return self._send(ControlRequest(0x80, GET_DESCRIPTOR, kind << 8 | index, lang, length=length))

    def _describe(self) -> DeviceInfo:
        dev = parse_device(self._descriptor(DT_DEVICE, 0, 18))
        head = self._descriptor(DT_CONFIG, 0, 9)
        total = int.from_bytes(head[2:4], "little") if len(head) >= 4 else 9
        cfg = parse_config(self._descriptor(DT_CONFIG, 0, total))

        def s(i: int) -> str:
            return parse_string(self._descriptor(DT_STRING, i, 255, LANG_EN_US)) if i else ""

        return DeviceInfo(self.pipe.name, dev.vendor, dev.product, dev.bcd_device, s(dev.i_manufacturer).strip(),
                          s(dev.i_product).strip(), s(dev.i_serial), {a.alt: s(a.i_interface) for a in cfg.alts},
                          cfg.transfer_size)

    def layout(self, alt: int) -> Layout:
        if alt not in self.info.alt_names:
            raise InputError(f"{self.pipe.name}: no alt setting {alt} (the device has {sorted(self.info.alt_names)})")
        return parse_layout(self.info.alt_names[alt])

    def select_alt(self, alt: int) -> None:
        """SET_INTERFACE(alt), then bring the DFU state machine to dfuIDLE."""
        if alt == self.alt:
            return
        self.layout(alt)
        self._send(ControlRequest(0x01, SET_INTERFACE, alt, 0))
        self.alt = alt
        self.run(self.host.start())

    # -- the loop ------------------------------------------------------------------
    def _send(self, req: ControlRequest) -> bytes:
        self.counts[_kind(req)] += 1
        return self.pipe.control(req, self.timeout)

    def run(self, op: Operation) -> Any:
        """Drive one host operation to its end."""
        ev = op.next_event()
        while not isinstance(ev, Done):
            if isinstance(ev, Wait):
                self._sleep(ev.seconds)
                self.waited_s += ev.seconds
                ev = op.on_reply(b"")
                continue
            try:
                data = self._send(ev)
            except EndpointStalled as e:
                ev = op.on_stall(e)
            except DeviceGone as e:
                ev = op.on_gone(e)
            else:
                ev = op.on_reply(data)
        return ev.value

    def read(self, address: int, length: int, *, pointer_is_set: bool = False, skip: SkipFn | None = None) -> bytes:
        return bytes(self.run(self.host.read(address, length, pointer_is_set=pointer_is_set, skip=skip)))

    def close(self) -> None:
        self.pipe.close()


_REQ_NAMES = {int(r): r.name.lower() for r in Req}  # looked up per transfer: no enum construction


def _kind(req: ControlRequest) -> str:
    if req.bmRequestType & 0x60 != 0x20:
        return "standard"
    if req.bRequest == Req.DNLOAD:
        if req.wValue == 0 and req.data[:1] == b"\x21":
            return "set_address"
        if req.wValue == 0 and req.data[:1] == b"\x41":
            return "erase"
        return "dnload" if req.data else "leave"
    return _REQ_NAMES.get(req.bRequest) or f"request_{req.bRequest}"


def open_pipes(specs: list[str], vid: int, pid: int) -> list[ControlPipe]:
    """Pipes for `--device` values; none given: every USB device with vid:pid."""
    from sparkflash.transports.dfu_socket import SocketPipe

    pipes: list[ControlPipe] = []
    try:
        for spec in specs or [""]:
            kind, _, rest = spec.partition(":")
            if kind == "virtual":
                if not rest:
                    raise InputError("--device virtual: needs a state directory (virtual:STATE_DIR)")
                pipes.append(SocketPipe(Path(rest)))
                continue
            from sparkflash.transports.usb_device import UsbPipe

            if kind == "usb":
                pipes += UsbPipe.open(vid, pid, rest)
            elif spec == "":
                pipes += UsbPipe.open(vid, pid)
            else:
                try:
                    v, p = (int(x, 16) for x in spec.split(":"))
                except ValueError:
                    raise InputError(f"--device {spec!r}: use VID:PID (1d50:607f), usb:BUS-PORT or "
                                     "virtual:STATE_DIR") from None
                pipes += UsbPipe.open(v, p)
    except BaseException:
        for p_ in pipes:
            p_.close()
        raise
    return pipes
