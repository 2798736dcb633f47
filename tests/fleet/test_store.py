"""The fleet data layer, the same tests on SQLite and PostgreSQL (the store_url fixture)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.errors import InputError
from sparkflash.fleet import Store, StoreError, open_store
from sparkflash.fleet.records import Phase, Target
from sparkflash.fleet.schema import LATEST

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
REF = "s3://demo/sparkflash/releases/example/1.0.0"


def dev(i: int) -> str:
    return f"{i:024x}"


def add(store: Store, n: int, *, labels: tuple[str, ...] = (), instance: str | None = None) -> list[str]:
    out = []
    for i in range(n):
        store.put_device(dev(i), _KEY, labels=labels)
        if instance:
            store.device_seen(dev(i), instance)
        out.append(dev(i))
    return out


def one_phase(store: Store, rid: str, devices: list[str]) -> None:
    store.create_rollout(rid, REF, Target(), [Phase(100, 1.0)], [(d, 0) for d in devices], now=1000.0)


def test_schema_is_migrated_once_and_a_newer_one_refused(store: Store, make_store: Callable[..., Store]) -> None:
    assert store.schema_version() == LATEST
    again = make_store()  # a second instance opening the same database: nothing re-applied
    assert again.schema_version() == LATEST
    assert len(again.db.execute("SELECT version FROM schema_version")) == LATEST
    store.db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (LATEST + 1, 0.0))
    with pytest.raises(StoreError, match=f"schema version {LATEST + 1}, newer"):
        make_store()


def test_devices_labels_presence_and_verified_release(store: Store) -> None:
    d = store.put_device(dev(1), _KEY, labels=["lab", "north"], capabilities=["files"], generation="ccl", now=5.0)
    assert (d.id, d.labels, d.capabilities, d.generation, d.instance, d.release) == (
        dev(1), ("lab", "north"), ("files",), "ccl", None, None)
    store.put_device(dev(2), _KEY, labels=["north"])
    assert [x.id for x in store.devices(label="north")] == [dev(1), dev(2)]
    assert [x.id for x in store.devices(label="lab")] == [dev(1)]
    assert store.device_seen(dev(1), "a", generation="os", now=10.0)
    assert not store.device_seen(dev(9), "a")  # not registered: nothing created
    d1 = store.device(dev(1))
    assert d1 is not None and (d1.instance, d1.last_seen, d1.generation) == ("a", 10.0, "os")
    store.device_left(dev(1), "b")  # a stale instance's disconnect leaves the newer connection alone
    assert store.device(dev(1)).instance == "a"  # type: ignore[union-attr]
    store.device_left(dev(1), "a", now=11.0)
    assert store.device(dev(1)).instance is None  # type: ignore[union-attr]
    store.set_verified_release(dev(1), "example", "1.0.0", "ab" * 32, now=12.0)
    assert store.device(dev(1)).release == ("example", "1.0.0", "ab" * 32)  # type: ignore[union-attr]
    store.put_device(dev(1), _KEY, labels=[])  # re-registering replaces labels, keeps what the device reported
    d1 = store.device(dev(1))
    assert d1 is not None and d1.labels == () and d1.generation == "os" and d1.release is not None


@pytest.mark.parametrize("bad", ["", "0" * 23, "0" * 25, "G" * 24, "AB" * 12, "0" * 24 + "\n", "../" + "0" * 21])
def test_every_device_id_is_full_matched(store: Store, bad: str) -> None:
    with pytest.raises(InputError, match="device id"):
        store.put_device(bad, _KEY)
    with pytest.raises(InputError, match="device id"):
        store.device(bad)
    assert store.devices() == []


@pytest.mark.parametrize("ref", ["/srv/blobs/firmware.bin", "file:///etc/passwd", "s3://demo/../etc", "s3://x/a",
                                 "s3://demo/a/../../b", "channel:s3://demo/p", "http://demo/p", "s3://demo/a b"])
def test_releases_only_by_reference(store: Store, ref: str) -> None:
    add(store, 1)
    with pytest.raises(InputError, match="release"):
        store.create_rollout("r1", ref, Target(), [Phase(100, 1.0)], [(dev(0), 0)])
    assert store.rollouts() == []


def test_channel_references_are_accepted(store: Store) -> None:
    add(store, 1)
    r = store.create_rollout("r1", "channel:s3://demo/sparkflash/example#stable", Target(), [Phase(100, 1.0)], [(dev(0), 0)])
    assert r.release_ref == "channel:s3://demo/sparkflash/example#stable" and r.state == "running"


def test_claims_only_connected_devices_and_each_once(store: Store) -> None:
    add(store, 3, instance="a")
    store.put_device(dev(7), _KEY)  # registered, not connected
    one_phase(store, "r1", [dev(0), dev(1), dev(2), dev(7)])
    got = store.claim("a", limit=2, lease_s=30, now=1000.0)
    assert [(c.device_id, c.attempt, c.release_ref) for c in got] == [(dev(0), 1, REF), (dev(1), 1, REF)]
    assert [c.device_id for c in store.claim("a", limit=10, now=1000.0)] == [dev(2)]
    assert store.claim("a", limit=10, now=1001.0) == []  # dev 7 is not connected here
    assert store.claim("b", limit=10, now=1001.0) == []
    assert [c.device_id for c in store.claim("b", limit=10, now=1001.0, connected_only=False)] == [dev(7)]


def test_a_device_takes_one_deployment_at_a_time(store: Store) -> None:
    """Two rollouts for one device (a rerun while the first still runs): the second waits for the
    first to end, so their messages never interleave on the device's one connection."""
    add(store, 2, instance="a")
    one_phase(store, "r1", [dev(0)])
    store.create_rollout("r2", REF, Target(), [Phase(100, 1.0)], [(dev(0), 0), (dev(1), 0)], now=1000.5)
    got = store.claim("a", limit=10, lease_s=30, now=1000.0)
    assert [(c.rollout_id, c.device_id) for c in got] == [("r1", dev(0)), ("r2", dev(1))]
    assert store.claim("a", limit=10, lease_s=30, now=1001.0) == []  # r2's dev 0 waits for r1's
    assert store.finish("a", "r1", dev(0), ok=True, detail={}, now=1002.0)
    assert [(c.rollout_id, c.device_id) for c in store.claim("a", limit=10, now=1003.0)] == [("r2", dev(0))]


def test_an_expired_lease_moves_to_another_instance_and_fences_the_old_one(store: Store) -> None:
    add(store, 1, instance="a")
    one_phase(store, "r1", [dev(0)])
    (_,) = store.claim("a", lease_s=30, now=1000.0)
    store.save_progress("r1", dev(0), "web", acked=8192, sector=0x101000, total=20000, now=1001.0)
    assert store.renew("a", "r1", dev(0), lease_s=30, now=1020.0)  # lease now until 1050
    store.device_seen(dev(0), "b")  # instance a died; the device reconnected to b
    assert store.claim("b", now=1049.0) == []  # not before the lease ran out
    (c2,) = store.claim("b", now=1051.0)
    assert c2.attempt == 2 and c2.progress == {"web": (8192, 0x101000, 20000)}  # resumes where a stopped
    assert not store.renew("a", "r1", dev(0), now=1052.0)
    assert not store.finish("a", "r1", dev(0), ok=True, detail={}, now=1052.0)  # the dead instance cannot write
    assert store.finish("b", "r1", dev(0), ok=True, detail={"status": "acknowledged"}, now=1053.0)
    (m,) = store.members("r1")
    assert (m.status, m.detail, m.attempts, m.claimed_by) == ("succeeded", {"status": "acknowledged"}, 2, None)


def test_concurrent_claimers_never_share_a_device(make_store: Callable[..., Store]) -> None:
    """Four instances (own connections, own threads) claim from 60 pending devices at once."""
    base = make_store()
    devices = [f"{i:024x}" for i in range(60)]
    for d in devices:
        base.put_device(d, _KEY)
    one_phase(base, "r1", devices)
    stores = [make_store() for _ in range(4)]
    got: dict[int, list[str]] = {i: [] for i in range(4)}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            while batch := stores[i].claim(f"i{i}", limit=3, now=1000.0, connected_only=False):
                got[i] += [c.device_id for c in batch]
        except Exception as e:  # noqa: BLE001 (reported below, from the main thread)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    claimed = [d for ds in got.values() for d in ds]
    assert sorted(claimed) == devices  # every device exactly once
    assert {m.claimed_by for m in base.members("r1")} == {f"i{i}" for i in range(4) if got[i]}


def test_paused_rollouts_hand_out_no_work(store: Store) -> None:
    add(store, 2, instance="a")
    one_phase(store, "r1", [dev(0), dev(1)])
    store.set_rollout("r1", state="paused", phase=0, forgiven=0, reason="test")
    assert store.claim("a", now=1000.0) == []
    store.set_rollout("r1", state="running", phase=0, forgiven=0, reason=None)
    assert len(store.claim("a", now=1000.0)) == 2


def test_progress_is_bounded_and_named(store: Store) -> None:
    add(store, 1, instance="a")
    one_phase(store, "r1", [dev(0)])
    store.save_progress("r1", dev(0), "font", acked=512, sector=0x80000, total=4096)
    store.save_progress("r1", dev(0), "font", acked=4096, sector=0x80000, total=4096)
    assert store.progress("r1", dev(0)) == {"font": (4096, 0x80000, 4096)}
    with pytest.raises(InputError, match="out of range"):
        store.save_progress("r1", dev(0), "font", acked=5000, sector=0, total=4096)
    with pytest.raises(InputError, match="region name"):
        store.save_progress("r1", dev(0), "../x", acked=0, sector=0, total=1)


def test_events_are_pruned_by_count_and_age(make_store: Callable[..., Store]) -> None:
    store = make_store(event_max_count=50, event_max_age_s=100.0)
    for i in range(300):  # the automatic prune runs every 256 events
        store.add_event("device-seen", detail={"i": i}, now=1000.0 + i)
    assert len(store.events(limit=1000)) <= 300 - 256 + 50
    store.prune_events(now=1299.0)
    ev = store.events(limit=1000)
    assert [e.detail["i"] for e in ev] == list(range(250, 300))  # the newest 50
    store.prune_events(now=1000.0 + 299 + 100 - 10.0)  # everything older than 100 s goes
    assert [e.detail["i"] for e in store.events(limit=1000)] == list(range(289, 300))  # time >= 1289 kept


def test_a_change_wakes_another_instance(make_store: Callable[..., Store]) -> None:
    a, b = make_store(), make_store()
    b.listen()
    assert not b.wait(0.05)
    add(a, 1)
    one_phase(a, "r1", [dev(0)])  # commits + notifies
    assert b.wait(5.0)


def test_a_sqlite_url_must_be_a_file(tmp_path: object) -> None:
    with pytest.raises(InputError, match="file path"):
        open_store("sqlite::memory:")
    with pytest.raises(InputError, match="expected postgresql"):
        open_store("mysql://x/y")


def test_postgresql_claims_skip_rows_another_instance_holds(postgres_server: object, tmp_path: object) -> None:
    """PostgreSQL only (SQLite has no row locks: its claim waits for the writer instead): a row
    locked by another open transaction is skipped at once, not waited for and not taken."""
    url = postgres_server.create_db("skiplocked")  # type: ignore[attr-defined]
    a, b = open_store(url), open_store(url)
    try:
        add(a, 3, instance="a")
        one_phase(a, "r1", [dev(0), dev(1), dev(2)])
        a.db.execute("SET lock_timeout = '5s'")  # were the rows waited for, the claim fails instead of hanging
        with b.transaction():
            b.db.execute("SELECT 1 FROM rollout_devices WHERE device_id = ? FOR UPDATE", (dev(1),))
            got = a.claim("a", limit=10, now=1000.0)  # would block for good without SKIP LOCKED
            assert [c.device_id for c in got] == [dev(0), dev(2)]
        assert [c.device_id for c in a.claim("a", limit=10, now=1000.0)] == [dev(1)]
    finally:
        a.close()
        b.close()


def test_an_instance_claims_its_devices_and_those_away_for_the_lease(store: Store) -> None:
    """What the server's claimer asks for (connected_only, offline_s = its lease): its own devices at once,
    a device never seen at once (it fails after its connect timeout if it never comes), a device that just
    left only once it has been away for the lease (it is probably reconnecting to another instance)."""
    for i in range(4):
        store.put_device(dev(i), _KEY)
    store.device_seen(dev(0), "a", now=1000.0)
    store.device_seen(dev(1), "b", now=1000.0)
    store.device_seen(dev(3), "a", now=1000.0)
    store.device_left(dev(3), "a", now=1005.0)  # dev 2: never seen
    one_phase(store, "r1", [dev(i) for i in range(4)])
    assert [c.device_id for c in store.claim("a", now=1010.0, offline_s=30.0)] == [dev(0), dev(2)]
    assert [c.device_id for c in store.claim("b", now=1010.0, offline_s=30.0)] == [dev(1)]
    assert store.claim("b", now=1034.0, offline_s=30.0) == []  # dev 3 left 29 s ago
    assert [c.device_id for c in store.claim("b", now=1036.0, offline_s=30.0)] == [dev(3)]


def test_a_renewal_hands_the_claim_back_when_the_device_moved(store: Store) -> None:
    add(store, 1, instance="a")
    one_phase(store, "r1", [dev(0)])
    (_,) = store.claim("a", lease_s=30, now=1000.0)
    store.save_progress("r1", dev(0), "web", acked=8192, sector=0x2000, total=20000, now=1001.0)
    store.device_seen(dev(0), "b", now=1002.0)  # it reconnected through another instance; a still lives
    assert not store.renew("a", "r1", dev(0), lease_s=30, now=1005.0)
    [m] = store.members("r1")
    assert (m.status, m.claimed_by) == ("pending", None)
    (c,) = store.claim("b", lease_s=30, now=1006.0)  # at once, not after a's lease
    assert (c.device_id, c.attempt, c.progress) == (dev(0), 2, {"web": (8192, 0x2000, 20000)})
    assert not store.finish("a", "r1", dev(0), ok=True, detail={})  # a's late outcome is fenced off
