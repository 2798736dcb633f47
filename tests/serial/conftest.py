"""A virtual Core with only its serial endpoint, the example release, and helpers."""

from __future__ import annotations

import importlib.util
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sparkflash.manifest.build import build_release
from sparkflash.manifest.keys import generate_key, load_signer
from sparkflash.manifest.release import sign_manifest
from sparkflash.virtual.core import CoreOptions, VirtualCore
from sparkflash.virtual.faults import Faults

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def tool() -> Callable[[str], str]:
    """tests/conftest.py's require_tool (both files are named conftest: load it by path)."""
    spec = importlib.util.spec_from_file_location("_sparkflash_root_conftest_serial", ROOT / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.require_tool  # type: ignore[no-any-return]


@pytest.fixture
def signed_example(tmp_path: Path) -> tuple[Path, Path]:
    """manifests/example.yaml built with a stand-in 30 KB firmware and signed: (manifest, pub key)."""
    fw = tmp_path / "firmware.bin"
    fw.write_bytes(struct.pack("<II", 0x20005000, 0x08005131) + os.urandom(30_000))
    res = build_release(ROOT / "manifests" / "example.yaml", tmp_path / "release", firmware=fw)
    pub, _ = generate_key(tmp_path / "keys" / "release.pem")
    sign_manifest(res.manifest_path, load_signer(tmp_path / "keys" / "release.pem"))
    return res.manifest_path, pub
