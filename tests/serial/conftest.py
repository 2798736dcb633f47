"""A virtual Core with only its serial endpoint, and the real receivers built for the host."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sparkflash.virtual.core import CoreOptions, VirtualCore
from sparkflash.virtual.faults import Faults

HARNESS = Path(__file__).resolve().parents[1] / "peers" / "serial_harness"
sys.path.insert(0, str(HARNESS))

import receiver_build  # noqa: E402
from receiver_runner import RealCore  # noqa: E402


def start_core(core_dir: Path, faults: list[str] | None = None, baud: int | None = None,
               **extra: Any) -> VirtualCore:
    return VirtualCore(core_dir, CoreOptions(endpoints=("serial",), faults=Faults.parse(faults or []),
                                             baud=baud, extra=extra)).start()


@pytest.fixture
def make_core(core_dir: Path) -> Iterator[Callable[..., VirtualCore]]:
    """make_core(faults=[...], baud=None) -> a started core; stopped (and checked) afterwards."""
    cores: list[VirtualCore] = []

    def make(faults: list[str] | None = None, baud: int | None = None, **extra: Any) -> VirtualCore:
        cores.append(start_core(core_dir, faults, baud, **extra))
        return cores[-1]

    yield make
    for core in cores:
        ep = core.endpoints.get("serial")
        core.stop()
        assert getattr(ep, "error", None) is None  # the device thread never crashed


@pytest.fixture
def serial_core(make_core: Callable[..., VirtualCore]) -> VirtualCore:
    return make_core()


def require_peers() -> Path:
    """../shared/peers; skip without it locally, fail under CI."""
    peers = receiver_build.peers_dir()
    if peers is None:
        msg = "../shared/peers (the original Spark sources) is not beside this checkout"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return peers


@pytest.fixture(scope="session")
def receiver_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 2014 receiver + listening mode + 2015 Ymodem.h, built for the host once."""
    peers = require_peers()
    for cc in ("gcc", "g++"):
        if shutil.which(cc) is None:
            msg = f"{cc} is missing (apt-get install {cc}; tools/setup installs it)"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)
    return receiver_build.build(tmp_path_factory.mktemp("spark-receiver"), peers)


@pytest.fixture
def make_real(receiver_exe: Path, tmp_path: Path) -> Iterator[Callable[..., RealCore]]:
    """make_real(mode="listen"|"save"|"save2015", address=..., erase_us=..., ...) -> a running Core."""
    cores: list[RealCore] = []

    def make(**kw: Any) -> RealCore:
        cores.append(RealCore(receiver_exe, tmp_path / f"real{len(cores)}", **kw).start())
        return cores[-1]

    yield make
    for c in cores:
        c.stop()
        assert c.error is None, c.error
