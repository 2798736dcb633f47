"""Several instances: which one holds a device (the lease, on both databases), and 200 light
devices over two real `cloud serve` instances behind a real HAProxy, one of them SIGKILLed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest
from fleet_services import LoopThread, server_key

from sparkflash.fleet import Store, open_store
from sparkflash.fleet.instances import Presence, instances
from sparkflash.fleet.key_import import import_key_dir
from sparkflash.fleet.lightcore import LightFleet, LightOptions, device_ids
from sparkflash.fleet.local_services import LocalCluster, LocalPostgres

PEM = "-----BEGIN PUBLIC KEY-----\nMIGf\n-----END PUBLIC KEY-----\n"


def test_a_silent_instance_loses_its_devices_after_the_lease(make_store: Callable[..., Store]) -> None:
    a_store, b_store = make_store(), make_store()  # two instances, two connections to one database
    devs = device_ids(4, "5e")
    for d in devs:
        a_store.put_device(d, PEM)
    a, b = Presence(a_store, "inst-a", lease_s=30), Presence(b_store, "inst-b", lease_s=30)
    assert a.apply({devs[0]: "os", devs[1]: "ccl", devs[2]: "os"}, now=1000.0) == []
    assert b.apply({devs[3]: "os", "5e" + "f" * 22: "os"}, now=1000.0) == ["5e" + "f" * 22]  # not registered
    assert a.heartbeat(set(devs[:3]), now=1010.0) == 3 and b.heartbeat({devs[3]}, now=1035.0) == 1
    assert b.sweep(now=1035.0) == {}  # a renewed 25 s ago: within its 30-s lease
    assert b.sweep(now=1041.0) == {"inst-a": 3}  # a silent for 31 s: its devices are released
    rows = {d.id: d.instance for d in b_store.devices()}
    assert rows == {devs[0]: None, devs[1]: None, devs[2]: None, devs[3]: "inst-b"}
    expired = [(e.detail["instance"], e.detail["devices"], e.detail["by"]) for e in b_store.events()
               if e.kind == "instance-expired"]
    assert expired == [("inst-a", 3, "inst-b")]
    assert b_store.device(devs[1]) is not None and b_store.device(devs[1]).generation == "ccl"  # type: ignore[union-attr]
    # a was only slow: its next heartbeat takes back the devices still connected to it
    assert a.heartbeat({devs[0], devs[1]}, now=1042.0) == 2
    assert {d.id: d.instance for d in a_store.devices()}[devs[0]] == "inst-a"
    a.apply({devs[0]: None}, now=1043.0)  # its connection ended here
    b.apply({devs[1]: "os"}, now=1044.0)  # the device moved to b
    a.apply({devs[1]: None}, now=1045.0)  # a's late goodbye leaves b's newer connection alone
    assert {d.id: d.instance for d in a_store.devices()} == {devs[0]: None, devs[1]: "inst-b", devs[2]: None,
                                                               devs[3]: "inst-b"}
    assert [(i.name, i.devices, i.alive) for i in instances(a_store, now=1046.0)] == [("inst-b", 2, True)]
    assert a.begin() == 0 and b.end() == 2 and instances(a_store) == []


def test_presence_refuses_bad_names_and_leases(make_store: Callable[..., Store]) -> None:
    from sparkflash.errors import InputError

    s = make_store()
    with pytest.raises(InputError, match="instance id"):
        Presence(s, "a b")
    with pytest.raises(InputError, match="lease"):
        Presence(s, "a", lease_s=0.1)


@pytest.fixture
def cluster(postgres_server: LocalPostgres, tmp_path: Path,
            tool: Callable[[str], str]) -> Iterator[tuple[LocalCluster, Any, str, Path]]:
    """Two instances on one PostgreSQL schema behind HAProxy: (cluster, server public key, db url, devices dir)."""
    tool("haproxy")
    key, pub = server_key(tmp_path)
    devices = tmp_path / "devices"
    devices.mkdir()
    url = postgres_server.create_db(f"inst_{abs(hash(str(tmp_path))) % 10**9}")
    c = LocalCluster(tmp_path / "cluster", key, devices, url, n=2, lease_s=3.0)
    try:
        yield c.start(), pub, url, devices
    finally:
        c.stop()


def _devices_doc(admin: str, token: str) -> dict[str, Any]:
    req = Request(admin + "/v1/devices", headers={"Authorization": f"Bearer {token}"})
    with urlopen(req, timeout=10) as r:
        doc: dict[str, Any] = json.load(r)
    return doc


def test_two_hundred_devices_survive_an_instance_kill(cluster: tuple[LocalCluster, Any, str, Path]) -> None:
    """All 200 connect through HAProxy and are spread over both instances; SIGKILL one: its devices
    reconnect through HAProxy to the other and handshake again; every device ends connected, and the
    store (and the live instance) agree on where."""
    c, pub, url, devices = cluster
    fleet = LightFleet(pub, c.address, 200, LightOptions(reconnect_s=0.2, ping_s=5.0), key_pool=4, prefix="5d")
    fleet.register(devices)
    store = open_store(url)
    lt = LoopThread()
    try:
        assert len(import_key_dir(store, devices)[0]) == 200
        lt.run(_start(fleet))
        assert lt.run(fleet.wait_connected(40), timeout=60) == 200
        where = _wait_store(store, lambda held: sum(held.values()) == 200)
        assert set(where) == {"instance-a", "instance-b"} and min(where.values()) >= 50  # leastconn spread them
        victim, survivor = c.instance("instance-a"), c.instance("instance-b")
        moved = where["instance-a"]
        before = {d.id: d.stats.handshakes for d in fleet.devices}
        victim.kill()
        assert c.haproxy is not None
        c.haproxy.wait_state("instance-a", "DOWN")
        assert lt.run(_wait_all_reconnected(fleet, before, moved), timeout=60)
        where = _wait_store(store, lambda held: held == {"instance-b": 200})
        assert where == {"instance-b": 200}
        again = sum(d.stats.handshakes > before[d.id] for d in fleet.devices)
        assert again >= moved  # each device of the killed instance handshook again (with the survivor)
        live = _devices_doc(survivor.admin, survivor.token)
        ours = {d["id"] for d in live["devices"] if d["connected"]} & {d.id for d in fleet.devices}
        assert len(ours) == 200 and live["instance"] == "instance-b"
        assert all(d.connected.is_set() for d in fleet.devices)
        survivor.stop()  # a clean stop releases its devices at once, without waiting for the lease
        assert _wait_store(store, lambda held: held == {}) == {}
    finally:
        lt.run(fleet.stop())
        lt.close()
        store.close()


async def _start(fleet: LightFleet) -> None:
    fleet.start()


async def _wait_all_reconnected(fleet: LightFleet, before: dict[str, int], moved: int, timeout: float = 40) -> bool:
    """Wait until at least `moved` devices handshook again and every device is connected."""
    end = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < end:
        again = sum(d.stats.handshakes > before[d.id] for d in fleet.devices)
        if again >= moved and all(d.connected.is_set() for d in fleet.devices):
            return True
        await asyncio.sleep(0.05)
    return False


def _wait_store(store: Store, ok: Callable[[dict[str, int]], bool], timeout: float = 20.0) -> dict[str, int]:
    """instance -> devices it holds, as the store says, once `ok` (or the timeout)."""
    import time

    end = time.monotonic() + timeout
    while True:
        held: dict[str, int] = {}
        for d in store.devices():
            if d.instance is not None:
                held[d.instance] = held.get(d.instance, 0) + 1
        if ok(held) or time.monotonic() > end:
            return held
        time.sleep(0.1)


def test_real_device_code_moves_to_the_other_instance(cluster: tuple[LocalCluster, Any, str, Path],
                                                      tmp_path: Path) -> None:
    """The real device protocol code from ../shared/peers (Device OS v0.4.9 `communication/` and
    core-communication-lib master, built for the host by tests/peers/ota_harness), connected through
    HAProxy: each instance records its generation; SIGKILL the instance holding the Device OS one and
    it reconnects through HAProxy to the other, where the database and that instance then see both."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers" / "ota_harness"))
    import realcore

    from sparkflash.protocols.cloud_handshake import server_public_der
    from sparkflash.protocols.core_keys import generate_device_key

    c, pub, url, devices = cluster
    cores = []
    for kind in ("deviceos", "stock"):
        exe = realcore.build(kind, tmp_path / "build" / kind)
        core = realcore.RealCore(exe, tmp_path / f"core-{kind}", c.address[1], generate_device_key(),
                                 server_public_der(pub))
        (devices / f"{core.device_id}.pub.pem").write_bytes(core.public_pem)
        cores.append(core)
    store = open_store(url)
    try:
        assert len(import_key_dir(store, devices)[0]) == 2
        for core in cores:
            core.start()
        assert sum(_wait_store(store, lambda held: sum(held.values()) == 2).values()) == 2
        gens = {d.id: d.generation for d in store.devices()}
        assert gens == {cores[0].device_id: "os", cores[1].device_id: "ccl"}  # from their handshakes
        victim = c.instance(store.device(cores[0].device_id).instance)  # type: ignore[arg-type, union-attr]
        survivor = next(i for i in c.instances if i is not victim)
        victim.kill()  # the Device OS core's instance (the other core may be on either)
        assert _wait_store(store, lambda held: held == {survivor.name: 2}, timeout=40) == {survivor.name: 2}
        live = {d["id"]: d for d in _devices_doc(survivor.admin, survivor.token)["devices"]}
        assert all(live[core.device_id]["connected"] for core in cores)
        assert [live[core.device_id]["generation"] for core in cores] == ["os", "ccl"]
    finally:
        for core in cores:
            if core.proc is not None:
                core.kill()
        store.close()


def test_a_heartbeat_brings_the_rows_in_line_with_the_live_connections(make_store: Callable[..., Store]) -> None:
    s = make_store()
    devs = device_ids(3, "5c")
    for d in devs:
        s.put_device(d, PEM)
    p = Presence(s, "inst-c")
    p.apply({devs[0]: "os", devs[1]: "os"}, now=10.0)
    # devs[1] left without its goodbye reaching the database; devs[2] came without its hello
    assert p.heartbeat({devs[0], devs[2]}, now=20.0) == 2
    assert {d.id: (d.instance, d.last_seen) for d in s.devices()} == {
        devs[0]: ("inst-c", 20.0), devs[1]: (None, 10.0), devs[2]: ("inst-c", 20.0)}


def test_a_killed_instance_s_devices_are_released_after_the_lease(cluster: tuple[LocalCluster, Any, str, Path]) -> None:
    """Real processes, lease 3 s: the devices stop together with a SIGKILL of instance-a, so none
    reconnects; instance-b's own devices leave cleanly at once, instance-a's rows are released by
    instance-b's sweep once the lease ran out (an instance-expired event says so)."""
    c, pub, url, devices = cluster
    fleet = LightFleet(pub, c.address, 20, LightOptions(reconnect_s=2.0), key_pool=2, prefix="5e")  # none back before stop
    fleet.register(devices)
    store = open_store(url)
    lt = LoopThread()
    try:
        import_key_dir(store, devices)
        lt.run(_start(fleet))
        assert lt.run(fleet.wait_connected(30), timeout=40) == 20
        held = _wait_store(store, lambda h: sum(h.values()) == 20)
        on_a = held.get("instance-a", 0)
        assert on_a > 0
        c.instance("instance-a").kill()
        for d in fleet.devices:  # every device off at once (not waiting for their tasks to end)
            lt.loop.call_soon_threadsafe(d.stop)
        assert _wait_store(store, lambda h: "instance-b" not in h, timeout=10) == {"instance-a": on_a}  # b: at once
        assert _wait_store(store, lambda h: h == {}, timeout=20) == {}  # a: after its lease
        expired = [e.detail for e in store.events() if e.kind == "instance-expired"]
        assert expired == [{"instance": "instance-a", "devices": on_a, "by": "instance-b"}]
    finally:
        lt.run(fleet.stop())
        lt.close()
        store.close()


def test_a_killed_instance_leaves_no_rsa_worker_behind(tmp_path: Path) -> None:
    """SIGKILL gives a server no chance to stop its RSA worker processes; they leave by themselves once
    their parent is gone (they used to stay, orphaned, for good)."""
    import os
    import time

    from sparkflash.fleet.local_services import CloudInstance

    key, _ = server_key(tmp_path)
    inst = CloudInstance("rsa-a", key, tmp_path / "devices", f"sqlite:{tmp_path / 'fleet.db'}", log_dir=tmp_path,
                         rsa_workers=1).start()
    try:
        def children(pid: int) -> list[int]:  # of every thread (the pool is started from the server's thread)
            kids: list[int] = []
            tasks = Path(f"/proc/{pid}/task")
            for task in tasks.iterdir() if tasks.is_dir() else ():
                try:
                    kids += [int(c) for c in (task / "children").read_text().split()]
                except OSError:
                    pass
            return kids + [g for k in kids for g in children(k)]

        workers = children(inst.pid)
        assert workers  # the pool (and its resource tracker) were started with the server
        inst.kill()

        def alive(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
            return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"

        end = time.monotonic() + 15
        while any(alive(p) for p in workers) and time.monotonic() < end:
            time.sleep(0.2)
        assert [p for p in workers if alive(p)] == []
    finally:
        inst.stop()
