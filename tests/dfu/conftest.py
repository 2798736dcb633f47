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


@pytest.fixture(scope="session")
def usb_bridge_available() -> None:
    """The umockdev bridge needs umockdev + python3-gi: skip locally, fail in CI (tools/setup installs them)."""
    import os

    from sparkflash.virtual.usb_attach import bridge_available

    why = bridge_available()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"virtual-core --usb cannot run although tools/setup installs its packages: {why}")
    pytest.skip(f"virtual-core --usb unavailable: {why}")
