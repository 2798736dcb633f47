"""A restarted `sparkflash cloud serve` resumes a running deployment from its database.

The server runs as a real process; the device is a light device (fleet.lightcore) in this
process whose flash records every write. The device is held in the middle of a 64 KiB file
(one write blocks), the server is killed with SIGKILL once the store holds its progress, the
device is let go, the server is started again on the same database: the deployment ends ok,
every byte is on the device, and no sector below the stored resume point was written twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fleet_services import wait_until

from sparkflash.cli import main
from sparkflash.cloud.registry import DeviceRegistry
from sparkflash.fleet import open_store
from sparkflash.fleet.lightcore import LightDevice, LightOptions, MemoryFlash, public_pem
from sparkflash.protocols.core_keys import generate_device_key

BASE, SIZE = 0x100000, 64 * 1024
HOLD_AT = BASE + 0x9000  # the device stalls on the chunk that starts here


class HeldFlash(MemoryFlash):
    """Records (connection number, address, size) of every write; one write blocks until released."""

    def __init__(self, device: LightDevice) -> None:
        super().__init__()
        self.device, self.writes = device, list[tuple[int, int, int]]()
        self.held, self.release, self._once = threading.Event(), threading.Event(), True

    def write(self, address: int, data: bytes) -> bool:
        if self._once and address <= HOLD_AT < address + len(data):
            self._once = False
            self.held.set()
            assert self.release.wait(60)
        self.writes.append((self.device.stats.connections, address, len(data)))
        return super().write(address, data)


@pytest.mark.parametrize("agent", [True, False], ids=["agent-verified", "no-agent-acknowledged"])
def test_server_killed_mid_deployment_resumes_from_the_database(
        tmp_path: Path, make_release: Any, loop_thread: Any, served_process: Callable[[list[str]], Any], unused_port: int,
        store_url: str, agent: bool) -> None:
    key = tmp_path / "server.der"
    assert main(["cloud", "keygen", "--out", str(key)]) == 0
    priv = serialization.load_der_private_key(key.read_bytes(), None)
    assert isinstance(priv, rsa.RSAPrivateKey)
    port, db = unused_port, store_url  # SQLite (a file) and PostgreSQL alike
    devkey = generate_device_key()
    dev = LightDevice("6f" + os.urandom(11).hex(), devkey, priv.public_key(), ("127.0.0.1", port),
                      LightOptions(dialect="ccl", save_begin=True, agent=agent, reconnect_s=0.1))
    flash = HeldFlash(dev)
    dev.flash = flash
    DeviceRegistry(tmp_path / "devices").register(dev.id, public_pem(devkey), {"save_begin": True})
    data = os.urandom(SIZE)
    rel = make_release(tmp_path / "rel", [("big", BASE, data)])
    server = served_process(["--listen", f"127.0.0.1:{port}", "--admin", "127.0.0.1:0", "--key", str(key),
                     "--devices", str(tmp_path / "devices"), "--store", str(tmp_path / "state"),
                     "--database", db, "--insecure-unsigned", "--rsa-workers", "0"])
    task: list[Any] = []
    try:
        async def up() -> None:
            import asyncio

            task.append(asyncio.ensure_future(dev.run()))
            await asyncio.wait_for(dev.connected.wait(), 20)

        loop_thread.run(up())
        import base64

        c = server.client()
        c.call("PUT", f"/v1/blobs/{rel.manifest.regions[0].sha256}", {"data": base64.b64encode(data).decode()})
        rid = c.call("POST", "/v1/deployments", {"manifest_json": rel.raw.decode(), "devices": [dev.id]})["id"]
        assert flash.held.wait(30), "the transfer never reached the held chunk"
        with open_store(db) as store:  # another connection to the server's own database
            saved = wait_until("stored progress", lambda: store.progress(rid, dev.id).get("big", (0, 0, 0))[1] >= 0x8000)
            resume_at = store.progress(rid, dev.id)["big"][1]
            assert saved and [m.status for m in store.members(rid)] == ["claimed"]
        server.kill()  # SIGKILL: nothing is flushed, nothing said goodbye
        first_life = dev.stats.connections
        flash.release.set()
        server.start()
        c = server.client()
        status = wait_until("the resumed deployment to end", lambda: (s := c.call("GET", f"/v1/deployments/{rid}"))["done"]
                          and s, timeout=60)
        assert status["ok"], status
        [res] = status["results"]
        assert [r["status"] for r in res["regions"]] == ["verified" if agent else "acknowledged"], res
        assert flash.read(BASE, SIZE) == data  # every byte, read from the device's memory
        after = [(a, n) for conn, a, n in flash.writes if conn > first_life]
        assert after and min(a for a, _ in after) >= BASE + resume_at  # resumed at the stored sector, not at 0
        below = [a for _, a, _ in flash.writes if a < BASE + resume_at]
        assert len(below) == len(set(below)) == resume_at // 512  # each chunk below it written exactly once
        with open_store(db) as store:
            assert [m.attempts for m in store.members(rid)] == [2]  # the second claim was the resumed one
            kinds = [e.kind for e in store.events(rollout_id=rid)]
            assert kinds.count("deploy-start") == 2 and kinds[-3:] == ["device-succeeded", "phase-passed", "rollout-done"]
    finally:
        flash.release.set()
        dev.stop()
        if task:
            loop_thread.run(_wait(task[0]))
        server.stop()


async def _wait(t: Any) -> None:
    import asyncio

    await asyncio.wait([t], timeout=10)
