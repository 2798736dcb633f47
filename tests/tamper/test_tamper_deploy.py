"""A tampered release never reaches the flash: every changed byte is refused before any write.

Exhaustive on a tiny signed release: each byte of manifest.json, manifest.json.sig and every
blob has its low bit flipped in turn, and the release is opened and deployed (open_release
then deploy_release) to a virtual Core. Each attempt must end in VerifyError with no flasher
call and both flash images byte-identical. Then a seeded sample of flips (any bit, any
file) on the example release (manifests/example.yaml). The untouched release deploys and
verifies at the end, so a harness that refuses everything cannot pass.
"""

from __future__ import annotations

import argparse
import random
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sparkflash.deploy.base import ProgressFn, WriteReport
from sparkflash.deploy.dfu import deploy
from sparkflash.deploy.run import deploy_release
from sparkflash.errors import VerifyError
from sparkflash.manifest.build import build_release
from sparkflash.manifest.keys import TrustStore, generate_key, load_signer
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import MANIFEST_NAME, SIGNATURE_NAME, blob_key, digests, open_release, sign_manifest
from sparkflash.virtual.core import CoreOptions, VirtualCore
from sparkflash.virtual.state import CoreState

ROOT = Path(__file__).resolve().parents[2]
TINY = """\
name: tiny
version: "1.0.0"
board: spark-core
regions:
  - name: fw
    kind: firmware
    source: {build: firmware}
  - name: addr
    area: server_address
    source: {file: small.bin}
    pad_to: 0x80
  - name: data
    memory: external
    address: 0x80000
    source: {file: data.bin}
"""
SAMPLE = 200


def firmware_image(size: int = 64) -> bytes:
    """Initial SP at the top of RAM, a Thumb reset handler in the application area: passes the checks."""
    return struct.pack("<II", 0x20005000, 0x08005101) + bytes((i * 7) & 0xFF for i in range(size - 8))


@dataclass
class DirectFlasher:
    """Writes the core's flash images directly (no transport): the tamper checks happen before it."""

    state: CoreState
    via: str = "direct"
    calls: list[str] = field(default_factory=list)

    def device_id(self) -> str:
        return self.state.device_id.hex()

    def _flash(self, region: Region):  # type: ignore[no-untyped-def]
        return self.state.internal if region.memory == "internal" else self.state.external

    def write_region(self, region: Region, data: bytes, progress: ProgressFn) -> WriteReport:
        self.calls.append(f"write {region.name}")
        assert self._flash(region).write_erased(region.address, data), f"region {region.name}: read-back differs"
        progress(len(data), len(data))
        return WriteReport(bytes_sent=len(data), sectors_erased=len(region.erase))

    def device_digest(self, region: Region) -> tuple[int, str]:
        self.calls.append(f"digest {region.name}")
        sha, crc = digests(self._flash(region).read(region.address, region.size))
        return crc, sha

    def finish(self) -> None:
        self.calls.append("finish")


@dataclass
class Bench:
    out: Path
    trust: TrustStore
    flasher: DirectFlasher

    def images(self) -> tuple[bytes, bytes, int]:
        """Both flash images, byte for byte, and how many erase/program calls they have seen."""
        st = self.flasher.state
        calls = sum(f.program_count + f.erase_count for f in (st.internal, st.external))
        return st.internal.read(st.internal.base, st.internal.size), st.external.read(st.external.base, st.external.size), calls

    def files(self) -> dict[str, Path]:
        rel = open_release(self.out / MANIFEST_NAME, self.trust)
        blobs = {f"blob {r.name}": self.out / blob_key(r.sha256) for r in rel.manifest.regions}
        return {"manifest": self.out / MANIFEST_NAME, "signature": self.out / SIGNATURE_NAME, **blobs}

    def deploy(self) -> None:
        deploy_release(self.flasher, open_release(self.out / MANIFEST_NAME, self.trust))

    def refused(self, path: Path, original: bytes, offset: int, mask: int,
                before: tuple[bytes, bytes, int] | None = None) -> str | None:
        """Flip one byte, deploy, restore; None if refused cleanly, else what went wrong.
        `before`: the images as they were (taken once by callers that flip many times)."""
        before = before or self.images()
        changed = bytearray(original)
        changed[offset] ^= mask
        path.write_bytes(changed)
        wrong = []
        try:
            self.deploy()
            wrong.append("deployed")
        except VerifyError:
            pass
        finally:
            path.write_bytes(original)
        if self.flasher.calls:
            wrong.append(f"flasher called: {self.flasher.calls}")
            self.flasher.calls = []
        if self.images() != before:
            wrong.append("flash changed")
        return "; ".join(wrong) or None

    def deploys_untouched(self) -> None:
        result = deploy_release(self.flasher, open_release(self.out / MANIFEST_NAME, self.trust))
        assert result.ok and {r.status for r in result.regions} == {"verified"}, result.to_json()
        assert self.flasher.calls[-1] == "finish"
        self.flasher.calls = []


def _bench(tmp: Path, yaml_path: Path, firmware: Path) -> Iterator[Bench]:
    out = tmp / "dist"
    res = build_release(yaml_path, out, firmware=firmware)
    priv = tmp / "keys" / "dev.pem"
    pub, _ = generate_key(priv)
    sign_manifest(res.manifest_path, load_signer(priv))
    core = VirtualCore(tmp / "core", CoreOptions(endpoints=())).start()
    try:
        yield Bench(out, TrustStore.from_paths([pub]), DirectFlasher(core.state))
    finally:
        core.stop()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    tmp = tmp_path_factory.mktemp("tiny")
    (tmp / "small.bin").write_bytes(bytes(range(100)))
    (tmp / "data.bin").write_bytes(bytes(range(256)) * 2)
    (tmp / "firmware.bin").write_bytes(firmware_image())
    (tmp / "release.yaml").write_text(TINY)
    yield from _bench(tmp, tmp / "release.yaml", tmp / "firmware.bin")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    tmp = tmp_path_factory.mktemp("example")
    shutil.copytree(ROOT / "manifests", tmp / "manifests")
    (tmp / "firmware.bin").write_bytes(firmware_image(4096))
    yield from _bench(tmp, tmp / "manifests" / "example.yaml", tmp / "firmware.bin")


def test_tiny_release_files(tiny: Bench) -> None:
    files = tiny.files()
    assert sorted(files) == ["blob addr", "blob data", "blob fw", "manifest", "signature"]
    assert sum(p.stat().st_size for p in files.values()) > 1000


@pytest.mark.parametrize("which", ["manifest", "signature", "blob fw", "blob addr", "blob data"])
def test_every_byte_flip_is_refused_before_any_write(tiny: Bench, which: str) -> None:
    path = tiny.files()[which]
    original = path.read_bytes()
    failures = {}
    before = tiny.images()
    for offset in range(len(original)):
        why = tiny.refused(path, original, offset, 0x01, before)
        if why is not None:
            failures[offset] = why
    assert not failures, f"{which}: {len(failures)} of {len(original)} flips not refused cleanly, " \
                         f"first {list(failures.items())[:5]}"
    assert path.read_bytes() == original
    tiny.deploys_untouched()


def test_sample_of_flips_on_the_example_release(example: Bench) -> None:
    files = example.files()
    assert {"manifest", "signature", "blob firmware", "blob font", "blob web"} <= set(files)
    originals = {name: p.read_bytes() for name, p in files.items()}
    rng = random.Random(8)  # issue 8: the same sample every run
    names = sorted(files)
    failures = []
    before = example.images()
    for _ in range(SAMPLE):
        name = rng.choice(names)  # each file equally often, whatever its size
        offset, mask = rng.randrange(len(originals[name])), 1 << rng.randrange(8)
        why = example.refused(files[name], originals[name], offset, mask, before)
        if why is not None:
            failures.append((name, offset, mask, why))
    assert not failures, f"{len(failures)} of {SAMPLE} flips not refused cleanly, first {failures[:5]}"
    example.deploys_untouched()


def test_the_harness_notices_a_write(tiny: Bench) -> None:
    """If a tampered blob did reach the flasher, `refused` would say so (the test can fail)."""
    path = tiny.files()["blob data"]
    original = path.read_bytes()
    real = tiny.deploy

    def deploy_without_checks() -> None:
        rel = open_release(tiny.out / MANIFEST_NAME, tiny.trust)
        region = rel.manifest.region("data")
        tiny.flasher.write_region(region, path.read_bytes(), lambda d, t: None)
        raise VerifyError("checked too late")

    tiny.deploy = deploy_without_checks  # type: ignore[method-assign]
    try:
        why = tiny.refused(path, original, 0, 0x01)
    finally:
        tiny.deploy = real  # type: ignore[method-assign]
    assert why is not None and "flasher called" in why
    tiny.deploys_untouched()


DFU_SAMPLE = 30


def test_sample_of_flips_through_the_real_dfu_deploy(tmp_path: Path, example: Bench) -> None:
    """The same refusal through `deploy --via dfu`'s entry point, a DfuSe session to the
    virtual Core's bootloader and all: the session opens, nothing is erased or written."""
    core = VirtualCore(tmp_path / "dfu-core", CoreOptions(dfu_poll=False, endpoints=("dfu",))).start()
    try:
        args = argparse.Namespace(device=[f"virtual:{core.state.path}"], backend="pyusb", no_skip=False, leave=False,
                                  timeout=None, allow_downgrade=False)
        bench = Bench(example.out, example.trust, DirectFlasher(core.state))

        def via_dfu() -> None:
            rel = open_release(bench.out / MANIFEST_NAME, bench.trust)
            (res,) = deploy(args, rel, list(rel.manifest.regions), lambda e: None, None)
            failed = [r for r in res.regions if r.status == "failed"]
            if failed:  # a refusal inside the loop is reported per region; surface it
                raise VerifyError(failed[0].error or "failed")

        bench.deploy = via_dfu  # type: ignore[method-assign]
        files = bench.files()
        originals = {name: p.read_bytes() for name, p in files.items()}
        rng = random.Random(5)
        before = bench.images()
        failures = []
        for i in range(DFU_SAMPLE):
            name = sorted(files)[i % len(files)]
            offset = rng.randrange(len(originals[name]))
            why = bench.refused(files[name], originals[name], offset, 1 << rng.randrange(8), before)
            if why is not None:
                failures.append((name, offset, why))
        assert not failures, failures[:5]
        via_dfu()  # untouched: flashed and verified over DFU
        assert bench.images()[:2] != before[:2]
    finally:
        core.stop()
