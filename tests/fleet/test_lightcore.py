"""Light devices (fleet.lightcore) against today's `sparkflash cloud serve`, as a real process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fleet_services import LoopThread

from sparkflash.cli import main
from sparkflash.fleet.lightcore import (
    KEY_SECTORS,
    LightFleet,
    LightOptions,
    MemoryFlash,
)
from sparkflash.protocols.ota import crc32


def test_memory_flash_is_nor_flash() -> None:
    f = MemoryFlash()
    assert f.read(0x80000, 4) == b"\xff" * 4 and f.sectors == {}
    assert f.erase(0x80000, 5000) and f.write(0x80ffe, b"\x0f\xf0\x00\x01")  # across a sector boundary
    assert f.read(0x80ffe, 4) == b"\x0f\xf0\x00\x01" and sorted(f.sectors) == [0x80000, 0x81000]
    assert not f.write(0x80ffe, b"\xff")  # programming cannot set bits: the read-back differs
    assert not f.erase(KEY_SECTORS[0], 1) and not f.write(0x2000, b"\x00")  # key sectors are never written
    assert not f.erase(0x1FF000, 0x2000)  # past the end of the 2 MB part
    assert f.erase(0x80000, 1) and f.read(0x80ffe, 2) == b"\xff\xff" and f.read(0x81000, 2) == b"\x00\x01"
    assert f.digest(0x81000, 2) == (crc32(b"\x00\x01"), hashlib.sha256(b"\x00\x01").digest())
    assert f.digest(0x1FFFFF, 2) is None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[rsa.RSAPublicKey, int, str, Path]]:
    """`sparkflash cloud serve` on loopback ephemeral ports, one for this module (each test's
    devices have an id prefix of their own): (server public key, device port, admin URL, devices dir)."""
    tmp_path = tmp_path_factory.mktemp("served")
    key = tmp_path / "server.der"
    assert main(["cloud", "keygen", "--out", str(key)]) == 0
    priv = serialization.load_der_private_key(key.read_bytes(), None)
    assert isinstance(priv, rsa.RSAPrivateKey)
    devices = tmp_path / "devices"
    devices.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "sparkflash", "cloud", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--admin", "127.0.0.1:0", "--key", str(key), "--devices", str(devices), "--insecure-unsigned",
                             "--json"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        os.environ["SPARKFLASH_CLOUD_TOKEN_FILE"] = info["token_file"]  # the admin API's bearer token
        yield priv.public_key(), int(info["devices"].rsplit(":", 1)[1]), info["admin"], devices
    finally:
        os.environ.pop("SPARKFLASH_CLOUD_TOKEN_FILE", None)
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_fifty_light_devices_connect_ping_and_reconnect(served: tuple[rsa.RSAPublicKey, int, str, Path]) -> None:
    pub, port, _, devices = served
    fleet = LightFleet(pub, ("127.0.0.1", port), 50, LightOptions(ping_s=0.3, reconnect_s=0.1))
    fleet.register(devices)
    lt = LoopThread()
    try:
        async def scenario() -> dict[str, Any]:
            fleet.start()
            up = await fleet.wait_connected(30)
            end = asyncio.get_running_loop().time() + 20
            while any(d.stats.pongs < 2 for d in fleet.devices) and asyncio.get_running_loop().time() < end:
                await asyncio.sleep(0.05)
            pongs = [d.stats.pongs for d in fleet.devices]
            for d in fleet.devices[:5]:
                d.drop()  # a radio loss: each must reconnect and handshake again
            back = await fleet.wait_connected(20)
            conns = [d.stats.connections for d in fleet.devices[:5]]
            await fleet.stop()
            return {"up": up, "pongs": pongs, "back": back, "conns": conns}

        r = lt.run(scenario(), timeout=90)
    finally:
        lt.close()
    assert r["up"] == 50  # every handshake verified the server's signature with its public key
    assert min(r["pongs"]) >= 2  # the server answered each device's pings
    assert r["back"] == 50 and all(c >= 2 for c in r["conns"])


def test_an_unregistered_light_device_is_refused(served: tuple[rsa.RSAPublicKey, int, str, Path]) -> None:
    pub, port, _, devices = served
    fleet = LightFleet(pub, ("127.0.0.1", port), 2, LightOptions(reconnect_s=0.1), key_pool=1, prefix="7f")
    fleet.register(devices)
    (devices / f"{fleet.devices[1].id}.pub.pem").unlink()
    lt = LoopThread()
    try:
        async def scenario() -> tuple[int, int, str | None]:
            fleet.start()
            await fleet.devices[0].connected.wait()
            end = asyncio.get_running_loop().time() + 10
            while fleet.devices[1].stats.last_error is None and asyncio.get_running_loop().time() < end:
                await asyncio.sleep(0.02)
            up = sum(d.connected.is_set() for d in fleet.devices)
            await fleet.stop()
            return up, fleet.devices[1].stats.connections, fleet.devices[1].stats.last_error

        up, tries, err = lt.run(scenario())
    finally:
        lt.close()
    assert up == 1 and tries >= 1 and err is not None and "IncompleteReadError" in err  # closed before the reply
    assert fleet.devices[1].stats.handshakes == 0


@pytest.mark.parametrize("dialect", ["os", "ccl"])
def test_a_file_deployed_over_the_air_lands_in_a_light_device(served: tuple[rsa.RSAPublicKey, int, str, Path],
                                                              make_release: Any, tmp_path: Path, dialect: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`deploy --via ota` to a light device: 0.3.x-like with SaveBegin registered (stop-and-wait)
    stores the file and it ends "acknowledged"; a Device OS-like one cannot store files, so the
    region is refused before any byte (exit 2) and its memory stays empty."""
    pub, port, admin, devices = served
    fleet = LightFleet(pub, ("127.0.0.1", port), 3, LightOptions(dialect=dialect, save_begin=dialect == "ccl"), key_pool=1,
                       prefix="8f" if dialect == "os" else "9f")
    fleet.register(devices)
    if dialect == "ccl":  # the flasher_additions library: SaveBegin is a registered property, never guessed
        from sparkflash.cloud.registry import DeviceRegistry

        for d in fleet.devices:
            DeviceRegistry(devices).register(d.id, (devices / f"{d.id}.pub.pem").read_bytes(), {"save_begin": True})
    data = os.urandom(10_000)
    store = tmp_path / "store"
    rel = make_release(store, [("web", 0x100000, data)])
    (store / "manifest.json").write_bytes(rel.raw)
    lt = LoopThread()
    try:
        async def up() -> int:
            fleet.start()
            return await fleet.wait_connected(20)

        assert lt.run(up()) == 3
        target = fleet.devices[1]
        capsys.readouterr()
        rc = main(["deploy", str(store / "manifest.json"), "--no-verify-signature", "--via", "ota",
                   "--device", target.id, "--cloud", admin, "--json"])
        lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
        lt.run(fleet.stop())
    finally:
        lt.close()
    if dialect == "os":
        assert rc == 2 and "Device OS" in lines[-1]["error"], lines[-1]
        assert target.stats.updates == 0 and target.flash.sectors == {}
        return
    assert rc == 0, lines[-1]
    assert [r["status"] for r in lines[-1]["deployments"][0]["regions"]] == ["acknowledged"]
    assert target.flash.read(0x100000, len(data)) == data
    assert target.stats.updates == 1 and all(d.stats.updates == 0 for d in fleet.devices if d is not target)
    assert fleet.devices[0].flash.sectors == {}


def test_the_lightcore_tool_reports_its_devices(served: tuple[rsa.RSAPublicKey, int, str, Path], tmp_path: Path) -> None:
    """tools/lightcore as a user runs it: registers its devices, connects them, one JSON line, exit 0."""
    pub, port, _, devices = served
    key = tmp_path / "server.pub"
    key.write_bytes(pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    tool = Path(__file__).resolve().parents[2] / "tools" / "lightcore"
    r = subprocess.run([sys.executable, str(tool), "--server", f"127.0.0.1:{port}", "--server-key", str(key), "-n", "5",
                        "--register", str(devices), "--prefix", "af", "--key-pool", "1", "--ping", "0.2", "--for", "0.5"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["devices"] == out["connected"] == 5 and out["all_connected_s"] is not None and out["pongs"] >= 5
    assert len(list(devices.glob("af*.pub.pem"))) == 5
    bad = subprocess.run([sys.executable, str(tool), "--server", "127.0.0.1:1", "--server-key", str(key), "-n", "1",
                          "--key-pool", "1", "--timeout", "0.3"], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 4 and json.loads(bad.stdout)["connected"] == 0
