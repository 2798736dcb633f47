"""OTA acceptance of the device agent against REAL device code: the feature/flasher_additions
core-communication-lib (../shared/peers) built for the host with tests/peers/ota_harness,
its descriptor callbacks (Spark.function / Spark.variable) wired to the agent's cloud
function through host/sfa_ota_app.c. Our cloud server deploys the signed example release
(firmware, font at 0x80000, web at 0x100000) with `sparkflash deploy --via ota`; every
region must be "verified" by the agent's own digest, and the release record the server
writes afterwards must read back, over the air, as the deployed manifest."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash import device_agent
from sparkflash.boards import load_board
from sparkflash.cli import main
from sparkflash.cloud import CloudServer, DeviceRegistry, ServerThread
from sparkflash.cloud.flasher import CloudFlasher
from sparkflash.cloud.server import Limits
from sparkflash.manifest.keys import TrustStore
from sparkflash.manifest.release import open_release
from sparkflash.protocols import release_record as RR
from sparkflash.protocols.cloud_handshake import server_public_der
from sparkflash.protocols.core_keys import generate_device_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers" / "ota_harness"))
import realcore  # noqa: E402


@pytest.fixture(scope="module")
def agent_on_flasher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harness with the real flasher_additions library and the agent as its application."""
    return realcore.build("flasher", tmp_path_factory.mktemp("agent-realcore"), extra_sources=device_agent.ota_app_sources(),
                          extra_flags=[f"-I{device_agent.include_dir()}"])


@pytest.fixture
def cloud(signed_example: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudServer]:
    """Our server, trusting only the example release's signing key (no unsigned releases)."""
    _, pub = signed_example
    srv = CloudServer(rsa.generate_private_key(public_exponent=65537, key_size=2048), DeviceRegistry(tmp_path / "devices"),
                      host="127.0.0.1", port=0, admin=("127.0.0.1", 0), trust=TrustStore.from_paths([pub]),
                      limits=Limits(per_peer=16))
    (tmp_path / "admin-token").write_text(srv.token)
    monkeypatch.setenv("SPARKFLASH_CLOUD_TOKEN_FILE", str(tmp_path / "admin-token"))
    with ServerThread(srv):
        yield srv


def test_example_release_verified_by_the_agent_on_flasher_additions(
        agent_on_flasher: Path, cloud: CloudServer, signed_example: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest, pub = signed_example
    rel = open_release(manifest, TrustStore.from_paths([pub]))
    core = realcore.RealCore(agent_on_flasher, tmp_path / "core", cloud.port, generate_device_key(),
                             server_public_der(cloud.key.public_key()))
    cloud.registry.register(core.device_id, core.public_pem)  # no save_begin property: the agent's sfcaps says so
    core.start()
    try:
        core.wait_line("connected")
        assert cloud.admin_addr is not None
        url = "http://{}:{}".format(*cloud.admin_addr[:2])
        capsys.readouterr()
        rc = main(["deploy", str(manifest), "--trust", str(pub), "--via", "ota", "--device", core.device_id,
                   "--cloud", url, "--require-verified", "--json"])
        cap = capsys.readouterr()
        lines = [json.loads(ln) for ln in cap.out.splitlines()]
        assert rc == 0, lines[-1] if lines else cap.err[-2000:]
        regions = lines[-1]["deployments"][0]["regions"]
        assert [(r["region"], r["status"]) for r in regions] == [(r.name, "verified") for r in rel.manifest.regions]
        assert all("device's own digest" in r["proves"] for r in regions), regions
        # The real library stored the files itself (SaveBegin: its prepare_to_save_file) and the firmware.
        for r in rel.manifest.regions:
            got = core.internal(r.address, r.size) if r.memory == "internal" else core.flash(r.address, r.size)
            assert got == rel.blob(r), r.name
        assert core.count(r"begin 0x80000 \d+") == 1 and core.count(r"begin 0x100000 \d+") == 1
        assert core.count("reboot") == 1
        # Describe showed the agent, and the record it now holds is the deployed manifest's.
        session = cloud.sessions[core.device_id]
        assert session.info is not None and session.info.agent and session.info.save_begin
        want = (rel.manifest.name, rel.manifest.version, hashlib.sha256(rel.raw).hexdigest())
        flasher = CloudFlasher(cloud, load_board("spark-core"), core.device_id)
        assert flasher.release_record() == want  # REC over the cloud function and sfresult
        on_flash = RR.latest(core.flash(0x3000, 0x1000))
        assert on_flash is not None and (on_flash.name, on_flash.version, on_flash.sha256) == want
        # One byte of the font decays on the device: deployed again, the agent's sector CRCs
        # point at that sector alone, which is sent and verified; the rest is unchanged.
        with (core.dir / "flash.bin").open("r+b") as f:  # the harness maps this file shared
            f.seek(0x81234)
            f.write(bytes([rel.blob(rel.manifest.regions[1])[0x1234] ^ 0x10]))
        capsys.readouterr()
        rc = main(["deploy", str(manifest), "--trust", str(pub), "--via", "ota", "--device", core.device_id,
                   "--cloud", url, "--require-verified", "--json"])
        doc = json.loads(capsys.readouterr().out.splitlines()[-1])
        statuses = [(r["region"], r["status"]) for r in doc["deployments"][0]["regions"]]
        assert rc == 0 and statuses == [("firmware", "unchanged"), ("font", "verified"), ("web", "unchanged")], doc
        assert core.count(r"begin 0x81000 4096") == 1 and core.count(r"begin 0x80000 \d+") == 1
        assert core.count("reboot") == 1
        assert core.flash(0x80000, 0x10000) == rel.blob(rel.manifest.regions[1])
    finally:
        core.kill()


@pytest.mark.parametrize("kind", ["stock", "deviceos"])
def test_firmware_verified_by_the_agent_on_stock_and_device_os(
        kind: str, cloud: CloudServer, signed_example: tuple[Path, Path], tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """The same agent with core-communication-lib master (0.3.x) and Device OS v0.4.9: no
    SaveBegin (sfcaps "agent": files are refused before any byte, so only the firmware region
    is deployed), but the firmware is verified by the agent's digest and the record written."""
    exe = realcore.build(kind, tmp_path_factory.mktemp(f"agent-{kind}"), extra_sources=device_agent.ota_app_sources(),
                         extra_flags=[f"-I{device_agent.include_dir()}"])
    manifest, pub = signed_example
    rel = open_release(manifest, TrustStore.from_paths([pub]))
    core = realcore.RealCore(exe, tmp_path / "core", cloud.port, generate_device_key(),
                             server_public_der(cloud.key.public_key()))
    cloud.registry.register(core.device_id, core.public_pem)
    core.start()
    try:
        core.wait_line("connected")
        assert cloud.admin_addr is not None
        url = "http://{}:{}".format(*cloud.admin_addr[:2])
        base = ["deploy", str(manifest), "--trust", str(pub), "--via", "ota", "--device", core.device_id,
                "--cloud", url, "--require-verified", "--json"]
        capsys.readouterr()
        rc = main(base)  # the whole release: the files are refused, nothing is sent
        doc = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert rc == 2 and [r["status"] for r in doc["deployments"][0]["regions"]] == ["skipped", "failed", "failed"], doc
        assert core.count(r"begin .*") == 0
        rc = main([*base, "--region", "firmware"])
        doc = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert rc == 0 and [r["status"] for r in doc["deployments"][0]["regions"]] == ["verified"], doc
        fw = rel.manifest.regions[0]
        assert core.internal(fw.address, fw.size) == rel.blob(fw) and core.count("reboot") == 1
        session = cloud.sessions[core.device_id]
        assert session.info is not None and session.info.agent and not session.info.save_begin
        want = (rel.manifest.name, rel.manifest.version, hashlib.sha256(rel.raw).hexdigest())
        assert CloudFlasher(cloud, load_board("spark-core"), core.device_id).release_record() == want
    finally:
        core.kill()
