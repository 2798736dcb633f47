"""A running virtual Spark Core: one state directory, several endpoints, one flash lock.

Endpoints (each `start()`/`stop()`, each in its own module):
    serial_pty.SerialEndpoint   listening-mode commands + YMODEM on a pty
    dfu_endpoint.DfuEndpoint    the DfuSe bootloader on a unix socket (STATE/dfu.sock)
    cloud_client.CloudClient    the Spark cloud protocol client over TCP
They share the flash images through `CoreState`, whose NorFlash objects lock.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sparkflash.virtual.faults import Faults
from sparkflash.virtual.state import CoreState

__all__ = ["CoreOptions", "Endpoint", "VirtualCore", "ENDPOINTS"]

ENDPOINTS = {
    "serial": "sparkflash.virtual.serial_pty:SerialEndpoint",
    "dfu": "sparkflash.virtual.dfu_endpoint:DfuEndpoint",
    "cloud": "sparkflash.virtual.cloud_client:CloudClient",
}


class Endpoint(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

STOCK_SERIAL = "sparkflash.virtual.serial_stock:StockSerialEndpoint"


@dataclass
class CoreOptions:
    timing: bool = False  # flash timing model (datasheet erase/program times)
    baud: int | None = None  # serial link-rate model; None = as fast as the pty goes
    dfu_poll: bool = True  # honour the Core's bwPollTimeout values (50/30/20 ms)
    faults: Faults = field(default_factory=Faults)
    endpoints: tuple[str, ...] = ("serial", "dfu")
    extra: dict[str, Any] = field(default_factory=dict)


class VirtualCore:
    def __init__(self, state_dir: Path, options: CoreOptions | None = None) -> None:
        self.options = options or CoreOptions()
        self.state = CoreState.open(state_dir, timing=self.options.timing)
        if self.options.faults.reset_after_programs is not None:
            self.state.external.reset_after_programs = self.options.faults.reset_after_programs
            self.state.internal.reset_after_programs = self.options.faults.reset_after_programs
        self.endpoints: dict[str, Endpoint] = {}
        self.stopped = threading.Event()

    def start(self) -> VirtualCore:
        for name in self.options.endpoints:
            spec = ENDPOINTS[name]
            if name == "serial" and str(self.options.extra.get("serial_mode", "agent")).startswith("stock"):
                spec = STOCK_SERIAL  # extra serial_mode = "stock" | "stock-save"
            mod, _, cls = spec.partition(":")
            ep: Endpoint = getattr(importlib.import_module(mod), cls)(self)
            ep.start()
            self.endpoints[name] = ep
        return self

    def stop(self) -> None:
        for ep in reversed(list(self.endpoints.values())):
            ep.stop()
        self.endpoints.clear()
        self.state.close()
        self.stopped.set()

    def __enter__(self) -> VirtualCore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
