"""Fixtures for the build tests: one example checkout built once per session (-j2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.firmware.workspace import make_checkout, run_scons


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
