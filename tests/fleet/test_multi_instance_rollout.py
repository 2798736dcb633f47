"""A rollout over several instances: 200 light devices through a real HAProxy to two real
`cloud serve` processes on one PostgreSQL database, a signed release fetched by each instance
from a real S3 server (moto). The rollout is created through one instance's admin API and runs
in three phases (1 % -> 10 % -> 100 %), each instance deploying to the devices it holds; that
instance is SIGKILLed mid-rollout while transfers are in flight. Its devices reconnect through
HAProxy to the other instance, which takes their deployments over once the dead instance's claim
lease runs out and resumes them from the progress the database holds. Every device ends
succeeded with every byte in its memory, no chunk below a resume point was written twice, and the
database and the surviving instance agree."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest
from fleet_services import LoopThread, server_key, wait_until

from sparkflash.cloud.flasher import SECTOR
from sparkflash.cloud.registry import DeviceRegistry
from sparkflash.fleet import Store, open_store
from sparkflash.fleet.lightcore import LightFleet, LightOptions, public_pem
from sparkflash.fleet.local_services import LocalCluster, LocalPostgres

BASE, SIZE = 0x80000, 16 * 1024  # the published release: one 16 KiB file at 0x80000
N = 200


def _call(admin: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    req = Request(admin + path, method=method, data=None if body is None else json.dumps(body).encode(),
                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urlopen(req, timeout=30) as r:
        doc: dict[str, Any] = json.load(r)
    return doc


@pytest.fixture
def cluster_parts(postgres_server: LocalPostgres, tmp_path: Path, tool: Callable[[str], str], keys: Path,
                  s3_endpoint: str, aim_s3: None) -> Iterator[tuple[Path, Any, str, Path, list[str]]]:
    tool("haproxy")
    key, pub = server_key(tmp_path)
    devices = tmp_path / "devices"
    devices.mkdir()
    url = postgres_server.create_db(f"multi_{uuid.uuid4().hex[:10]}")
    extra = ["--trust", str(keys / "release.pub.pem"), "--s3-endpoint", s3_endpoint]
    yield key, pub, url, devices, extra


def test_a_rollout_reaches_every_device_through_two_instances_one_killed_mid_rollout(
        cluster_parts: tuple[Path, Any, str, Path, list[str]], publish_release: Callable[..., str], tmp_path: Path) -> None:
    key, pub, url, devices, extra = cluster_parts
    data = os.urandom(SIZE)
    ref = publish_release(f"multi-{uuid.uuid4().hex[:8]}", "2.0.0", data)
    # ccl devices with SaveBegin (files); every other one has the agent (digests: "verified"), the rest are
    # "acknowledged"; a chunk takes 20 ms to program, so transfers are in flight when the instance dies
    opts = LightOptions(dialect="ccl", save_begin=True, reconnect_s=0.2, ping_s=5.0, write_s=0.02)
    fleet = LightFleet(pub, ("127.0.0.1", 0), N, opts, key_pool=4, prefix="5a")
    registry = DeviceRegistry(devices)
    for i, d in enumerate(fleet.devices):
        d.opt = dataclasses.replace(opts, agent=i % 2 == 0)
        registry.register(d.id, public_pem(d.key), {"save_begin": True})
    cluster = LocalCluster(tmp_path / "cluster", key, devices, url, n=2, lease_s=3.0, extra=tuple(extra))
    store = open_store(url)
    lt = LoopThread()
    try:
        cluster.start()
        for d in fleet.devices:
            d.address = cluster.address
        lt.run(_start(fleet))
        assert lt.run(fleet.wait_connected(40), timeout=60) == N
        held = wait_until("the store to hold all devices", lambda: _held(store, N), 20)
        assert set(held) == {"instance-a", "instance-b"}
        victim, survivor = cluster.instance("instance-b"), cluster.instance("instance-a")
        # created through the instance that will die; each instance deploys to the devices it holds
        made = _call(victim.admin, victim.token, "POST", "/v1/rollouts", {
            "release": ref, "id": "multi", "phases": [{"percent": 1, "threshold": 1.0}, {"percent": 10, "threshold": 1.0},
                                                      {"percent": 100, "threshold": 1.0}]})
        assert [p["devices"] for p in made["phases"]] == [2, 18, 180]

        def in_flight() -> dict[str, int] | None:  # device -> stored resume point, of b's transfers under way
            r = store.rollout("multi")
            assert r is not None
            if r.state != "running":
                failed = [(m.device_id, m.detail.get("error")) for m in store.members("multi") if m.status == "failed"]
                raise AssertionError(f"rollout {r.state} ({r.reason}) before the kill: {failed[:5]}")
            if r.phase < 2:
                return None
            got = {}
            for m in store.members("multi"):
                if m.status == "claimed" and m.claimed_by == "instance-b":
                    acked, sector, total = store.progress("multi", m.device_id).get("web", (0, 0, 0))
                    if 0 < acked < SIZE:
                        got[m.device_id] = min(sector, (SIZE - 1) // SECTOR * SECTOR)
            return got if len(got) >= 3 else None

        wait_until("instance-b's phase-3 transfers to be under way", in_flight, 60)
        victim.kill()  # SIGKILL: its claims stay in the database until their lease runs out
        claimed = {m.device_id for m in store.members("multi") if m.status == "claimed" and m.claimed_by == "instance-b"}
        resume = {d: min(p.get("web", (0, 0, 0))[1], (SIZE - 1) // SECTOR * SECTOR)
                  for d in claimed if (p := store.progress("multi", d))}  # the dead instance's last stored progress
        assert len(claimed) >= 3
        done = wait_until("the rollout to end", lambda: (r := store.rollout("multi")) is not None and r.state != "running"
                     and r, 60)
        assert done.state == "done", done
        members = store.members("multi")
        assert len(members) == N and all(m.status == "succeeded" for m in members)
        st = _call(survivor.admin, survivor.token, "GET", "/v1/rollouts/multi")
        assert st["state"] == "done" and [p["state"] for p in st["phases"]] == ["passed"] * 3
        by_dev = {d["device"]: d for d in st["devices"]}
        agent = {d.id for d in fleet.devices if d.opt.agent}
        for d in fleet.devices:
            assert d.flash.read(BASE, SIZE) == data, d.id  # every byte, read from the device's memory
            statuses = [r["status"] for r in by_dev[d.id]["detail"]["regions"]]
            # with the agent "verified", or "unchanged" when an interrupted attempt had written it all already
            # (the resumed one found every sector's digest matching); without, "acknowledged"
            assert statuses in ([["verified"], ["unchanged"]] if d.id in agent else [["acknowledged"]]), (d.id, statuses)
            twice = [a for a, n in d.flash.write_counts.items() if n > 1]
            if d.id in claimed:  # resumed elsewhere: nothing below the stored resume point written again
                assert all(a >= BASE + resume.get(d.id, 0) for a in twice), (d.id, resume.get(d.id), sorted(twice))
            else:
                assert twice == [], d.id  # never interrupted: each chunk written once
        resumed = [m for m in members if m.device_id in claimed]
        assert all(m.attempts == 2 for m in resumed)
        starts = [e for e in store.events(rollout_id="multi", limit=10_000) if e.kind == "deploy-start"]
        assert {e.device_id for e in starts if e.detail["attempt"] == 2 and e.detail["instance"] == "instance-a"} >= claimed
        assert any(r > 0 for r in resume.values())  # at least one resumed past its first sector
        assert _held(store) == {"instance-a": N}  # every device now connected through the survivor
    finally:
        lt.run(fleet.stop())
        lt.close()
        store.close()
        cluster.stop()


async def _start(fleet: LightFleet) -> None:
    fleet.start()


def _held(store: Store, n: int | None = None) -> dict[str, int] | None:
    """instance -> devices it holds, as the store says (None while they are not `n`)."""
    held: dict[str, int] = {}
    for d in store.devices():
        if d.instance is not None:
            held[d.instance] = held.get(d.instance, 0) + 1
    return held if n is None or sum(held.values()) == n else None


