"""A virtual Core with only its serial endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sparkflash.virtual.core import CoreOptions, VirtualCore
from sparkflash.virtual.faults import Faults


def start_core(core_dir: Path, faults: list[str] | None = None, baud: int | None = None) -> VirtualCore:
    return VirtualCore(core_dir, CoreOptions(endpoints=("serial",), faults=Faults.parse(faults or []),
                                             baud=baud)).start()


@pytest.fixture
def make_core(core_dir: Path) -> Iterator[Callable[..., VirtualCore]]:
    """make_core(faults=[...], baud=None) -> a started core; stopped (and checked) afterwards."""
    cores: list[VirtualCore] = []

    def make(faults: list[str] | None = None, baud: int | None = None) -> VirtualCore:
        cores.append(start_core(core_dir, faults, baud))
        return cores[-1]

    yield make
    for core in cores:
        ep = core.endpoints.get("serial")
        core.stop()
        assert getattr(ep, "error", None) is None  # the device thread never crashed


@pytest.fixture
def serial_core(make_core: Callable[..., VirtualCore]) -> VirtualCore:
    return make_core()
