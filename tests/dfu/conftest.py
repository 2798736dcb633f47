"""A virtual Core exposing only its DfuSe bootloader, plus release builders for DFU tests."""

from __future__ import annotations

import importlib.util
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sparkflash.manifest.build import build_release
from sparkflash.virtual.core import CoreOptions, VirtualCore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dfu_core(core_dir: Path) -> Iterator[VirtualCore]:
    core = VirtualCore(core_dir, CoreOptions(dfu_poll=False, endpoints=("dfu",))).start()
    try:
        yield core
    finally:
        core.stop()


@pytest.fixture
def example_release(tmp_path: Path) -> Path:
    """manifests/example.yaml built with a stand-in firmware (valid vector table, 30 KB)."""
    fw = tmp_path / "firmware.bin"
    fw.write_bytes(struct.pack("<II", 0x20005000, 0x08005131) + os.urandom(30_000))
    build_release(ROOT / "manifests" / "example.yaml", tmp_path / "release", firmware=fw)
    return tmp_path / "release" / "manifest.json"


def _root_require_tool() -> Callable[[str], str]:
    """tests/conftest.py's require_tool; both conftests are named `conftest`, so load it by path."""
    spec = importlib.util.spec_from_file_location("_sparkflash_root_conftest", ROOT / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.require_tool  # type: ignore[no-any-return]


@pytest.fixture
def tool() -> Callable[[str], str]:
    """tool("dfu-suffix") -> its path; skips locally, fails in CI when missing."""
    return _root_require_tool()
