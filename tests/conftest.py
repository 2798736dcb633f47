"""Shared fixtures: a fresh virtual core per test, isolated host state, tool detection."""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent

# Fuzz sizes: CI runs a modest number of cases per property; `tools/fuzz` selects the
# "fuzz" profile (>= 10,000 cases each). Tests that pin max_examples keep their own.
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=10_000, deadline=None, derandomize=False,  # tools/fuzz: seeded
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Host-side ledgers and caches go to the test's own directory."""
    monkeypatch.setenv("SPARKFLASH_HOME", str(tmp_path / "sparkflash-home"))


@pytest.fixture
def core_dir(tmp_path: Path) -> Path:
    return tmp_path / "core"


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """tool("dfu-suffix") -> its path; skips locally, fails in CI where .ci/run installs it."""
    return require_tool


def stand_in_firmware(path: Path, size: int = 30_000) -> Path:
    """A firmware image with a valid vector table (SP in RAM, Thumb reset handler in the app)."""
    path.write_bytes(struct.pack("<II", 0x20005000, 0x08005131) + os.urandom(size))
    return path


@pytest.fixture
def example_release(tmp_path: Path) -> Path:
    """manifests/example.yaml built with a stand-in firmware (unsigned): its manifest.json."""
    from sparkflash.manifest.build import build_release

    fw = stand_in_firmware(tmp_path / "firmware.bin")
    return build_release(ROOT / "manifests" / "example.yaml", tmp_path / "release", firmware=fw).manifest_path


@pytest.fixture
def signed_example(example_release: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The example release signed by a fresh key: (manifest.json, public key)."""
    from sparkflash.manifest.keys import generate_key, load_signer
    from sparkflash.manifest.release import sign_manifest

    pub, _ = generate_key(tmp_path / "keys" / "release.pem")
    sign_manifest(example_release, load_signer(tmp_path / "keys" / "release.pem"))
    return example_release, pub


# The Debian package of each external tool the tests use (tools/setup installs them all).
TOOL_PACKAGES = {"sb": "lrzsz", "rb": "lrzsz", "dfu-util": "dfu-util", "dfu-suffix": "dfu-util",
                 "dfuse-pack": "dfu-util", "socat": "socat", "make": "make",
                 "arm-none-eabi-gcc": "gcc-arm-none-eabi"}


def require_tool(name: str) -> str:
    """Path of an external tool; fail (never skip) in CI, where .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        package = TOOL_PACKAGES.get(name, name)
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed although .ci/run installs it (apt package {package})")
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return path


@pytest.fixture
def virtual_core(core_dir: Path) -> Iterator[object]:
    from sparkflash.virtual.core import CoreOptions, VirtualCore

    core = VirtualCore(core_dir, CoreOptions(dfu_poll=False)).start()
    try:
        yield core
    finally:
        core.stop()


PEERS = ROOT.parent / "shared" / "peers"


@pytest.fixture(scope="session")
def unpack_peer(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Unpack ../shared/peers/NAME.tar.gz once per session; its one top folder is returned.

    Without ../shared the test skips with that reason; under CI (where ../shared is laid
    beside the clone) it fails instead.
    """
    import tarfile

    root = tmp_path_factory.mktemp("peers")
    done: dict[str, Path] = {}

    def unpack(name: str) -> Path:
        if name in done:
            return done[name]
        archive = PEERS / f"{name}.tar.gz"
        if not archive.is_file():
            if os.environ.get("CI"):
                pytest.fail(f"{archive} is missing: CI lays ../shared beside the clone")
            pytest.skip(f"{archive} is missing (the real peers live in ../shared/peers)")
        dest = root / name
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
        (top,) = [p for p in dest.iterdir() if p.is_dir()] or [dest]
        done[name] = top
        return top

    return unpack
