"""A virtual Core exposing only its DfuSe bootloader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkflash.virtual.core import CoreOptions, VirtualCore


@pytest.fixture
def dfu_core(core_dir: Path) -> Iterator[VirtualCore]:
    core = VirtualCore(core_dir, CoreOptions(dfu_poll=False, endpoints=("dfu",))).start()
    try:
        yield core
    finally:
        core.stop()
