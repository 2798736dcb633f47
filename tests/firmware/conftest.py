"""Fixtures for the build tests: one example checkout built once per session (-j2), and
the real tree sets of ../shared/peers unpacked (and built with make and scons) once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from firmware_peers import BuiltSet, unpack_set

from sparkflash.firmware.workspace import make_checkout, run_make, run_scons


@pytest.fixture(scope="session")
def built_example(tmp_path_factory: pytest.TempPathFactory, tool: Callable[[str], str]) -> Path:
    """A checkout whose example firmware was built with -j2; tests only read it."""
    tool("arm-none-eabi-gcc")
    checkout = make_checkout(tmp_path_factory.mktemp("checkout-a"))
    result = run_scons(checkout, "-j2")
    assert result.returncode == 0, result.stdout + result.stderr
    return checkout


@pytest.fixture
def fresh_checkout(tmp_path: Path, tool: Callable[[str], str]) -> Path:
    """An unbuilt checkout of its own, for tests that edit sources or break things."""
    tool("arm-none-eabi-gcc")
    return make_checkout(tmp_path / "checkout")


@pytest.fixture(scope="session")
def tree_sets(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """tree_sets("flasher") -> a pristine core-firmware of that set (unpacked once per
    session; tests that build in it copy it first or use `built_set`)."""
    base = tmp_path_factory.mktemp("peers")

    def get(name: str) -> Path:
        return unpack_set(name, base)

    return get


_BUILT: dict[str, BuiltSet] = {}


@pytest.fixture(scope="session")
def built_set(tmp_path_factory: pytest.TempPathFactory, tool: Callable[[str], str]) -> Callable[[str], BuiltSet]:
    """built_set("flasher"): its default configuration built once per session, -j2, with
    make (the yardstick) and with scons; each at most once per set."""

    def get(name: str) -> BuiltSet:
        if name not in _BUILT:
            tool("make")
            tool("arm-none-eabi-gcc")
            base = tmp_path_factory.mktemp(f"set-{name}")
            firmware = unpack_set(name, base)
            checkout = make_checkout(base / "checkout")
            scons = run_scons(checkout, "-j2", f"CORE_FIRMWARE={firmware}")
            make = run_make(firmware, "-j2")
            _BUILT[name] = BuiltSet(name, firmware, checkout, make, scons)
        return _BUILT[name]

    return get
