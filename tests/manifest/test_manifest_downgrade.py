"""A release older than the one last deployed to a device is refused unless allowed.

The check lives in deploy.run.deploy_release, shared by every transport; here it is driven
with the virtual Core's flash images reached directly (as a debug probe would), so the test
can show that a refused downgrade wrote nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sparkflash.deploy.base import ProgressFn, WriteReport
from sparkflash.deploy.run import Ledger, deploy_release
from sparkflash.errors import InputError
from sparkflash.manifest.build import build_release
from sparkflash.manifest.keys import TrustStore, load_signer
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import Release, digests, open_release, sign_manifest
from sparkflash.virtual.nor_flash import NorFlash
from sparkflash.virtual.state import CoreState

RELEASE = """
name: fonts
version: "{version}"
board: spark-core
regions:
  - name: font
    area: user
    source: {{file: {blob}}}
"""


class ProbeFlasher:
    """Writes the virtual Core's flash images directly: erase, program, digest."""

    via = "probe"

    def __init__(self, core: CoreState) -> None:
        self.core = core

    def _flash(self, region: Region) -> NorFlash:
        return self.core.internal if region.memory == "internal" else self.core.external

    def device_id(self) -> str:
        return self.core.device_id.hex()

    def write_region(self, region: Region, data: bytes, progress: ProgressFn) -> WriteReport:
        flash = self._flash(region)
        for s in region.erase:
            flash.erase_sector(s)
        flash.program(region.address, data)
        progress(len(data), len(data))
        return WriteReport(bytes_sent=len(data), sectors_erased=len(region.erase))

    def device_digest(self, region: Region) -> tuple[int, str]:
        sha, crc = digests(self._flash(region).read(region.address, region.size))
        return crc, sha

    def finish(self) -> None:
        pass


@pytest.fixture
def core(core_dir: Path) -> Iterator[CoreState]:
    st = CoreState.open(core_dir)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def make_release(tmp_path: Path, write_yaml: Callable[[str, str], Path],
                 dev_key: tuple[Path, Path]) -> Callable[[str], Release]:
    def make(version: str) -> Release:
        (tmp_path / f"font-{version}.bin").write_bytes(version.encode() * 100)
        y = write_yaml(RELEASE.format(version=version, blob=f"font-{version}.bin"), f"fonts-{version}.yaml")
        res = build_release(y, tmp_path / f"dist-{version}")
        sign_manifest(res.manifest_path, load_signer(dev_key[0]))
        return open_release(res.manifest_path, TrustStore.from_paths([dev_key[1]]))

    return make


def test_downgrade_refused_then_allowed(core: CoreState, make_release: Callable[[str], Release],
                                        tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "home")
    flasher = ProbeFlasher(core)
    new, old = make_release("1.10.0"), make_release("1.9.0")
    assert deploy_release(flasher, new, ledger=ledger).ok
    assert ledger.last(flasher.device_id(), "fonts") == "1.10.0"
    before = core.external.read(0x80000, 0x1000)
    programs = core.external.program_count

    with pytest.raises(InputError, match=r"release fonts 1\.9\.0 is older than 1\.10\.0, last deployed to device "
                                         r"[0-9a-f]{24}; pass --allow-downgrade"):
        deploy_release(flasher, old, ledger=ledger)
    assert core.external.read(0x80000, 0x1000) == before  # nothing written
    assert core.external.program_count == programs
    assert ledger.last(flasher.device_id(), "fonts") == "1.10.0"

    result = deploy_release(flasher, old, ledger=ledger, allow_downgrade=True)
    assert result.ok and [r.status for r in result.regions] == ["verified"]
    assert core.external.read(0x80000, 501) == b"1.9.0" * 100 + b"\xff"
    assert ledger.last(flasher.device_id(), "fonts") == "1.9.0"


def test_same_or_newer_version_needs_no_flag(core: CoreState, make_release: Callable[[str], Release],
                                             tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "home")
    flasher = ProbeFlasher(core)
    for v in ("2.0.0-rc.1", "2.0.0", "2.0.0", "2.0.1"):
        assert deploy_release(flasher, make_release(v), ledger=ledger).ok
    assert ledger.last(flasher.device_id(), "fonts") == "2.0.1"
