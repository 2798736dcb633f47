"""Fixtures for the build tests: one example checkout built once per session (-j2)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sparkflash.build.workspace import make_checkout, run_scons


def require_arm_gcc() -> None:
    """The firmware build needs the cross toolchain: fail in CI (tools/setup installs it), skip elsewhere."""
    if shutil.which("arm-none-eabi-gcc") is None:
        if os.environ.get("CI"):
            pytest.fail("arm-none-eabi-gcc is not installed although .ci/run installs it (tools/setup)")
        pytest.skip("arm-none-eabi-gcc is not installed (apt-get install gcc-arm-none-eabi)")


@pytest.fixture(scope="session")
def built_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout whose example firmware was built with -j2; tests only read it."""
    require_arm_gcc()
    checkout = make_checkout(tmp_path_factory.mktemp("checkout-a"))
    result = run_scons(checkout, "-j2")
    assert result.returncode == 0, result.stdout + result.stderr
    return checkout


@pytest.fixture
def fresh_checkout(tmp_path: Path) -> Path:
    """An unbuilt checkout of its own, for tests that edit sources or break things."""
    require_arm_gcc()
    return make_checkout(tmp_path / "checkout")
