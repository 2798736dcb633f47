"""Rollouts driven through the store, the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.errors import InputError
from sparkflash.fleet import Store
from sparkflash.fleet.records import Phase, Target
from sparkflash.fleet.rollouts import Rollouts

PHASES = (Phase(1, 1.0), Phase(10, 0.9), Phase(100, 0.9))
REF = "s3://demo/sparkflash/releases/example/2.0.0"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def register(store: Store, n: int, instances: tuple[str, ...] = ("a",),
             labels: Callable[[int], list[str]] = lambda i: []) -> list[str]:
    out = []
    with store.transaction():
        for i in range(n):
            d = f"{i:024x}"
            store.put_device(d, _KEY, labels=labels(i))
            store.device_seen(d, instances[i % len(instances)])
            out.append(d)
    return out


def drive(ro: Rollouts, instance: str, fails: set[str] = frozenset(), limit: int = 50) -> int:  # type: ignore[assignment]
    """One instance: claim what it can and report each outcome; how many it finished."""
    n = 0
    while batch := ro.store.claim(instance, limit=limit):
        for c in batch:
            ro.store.save_progress(c.rollout_id, c.device_id, "firmware", acked=4096, sector=0x8005000, total=4096)
            assert ro.report(instance, c.rollout_id, c.device_id, ok=c.device_id not in fails,
                             detail={"status": "booted" if c.device_id not in fails else "failed"})
            n += 1
    return n


def test_three_phases_reach_every_device(store: Store) -> None:
    devices = register(store, 120, ("a", "b"))
    ro = Rollouts(store)
    r = ro.create("r1", REF, Target(), PHASES)
    st = ro.status("r1")
    assert [p["devices"] for p in st["phases"]] == [2, 10, 108]  # ceil(1.2), ceil(12)-2, the rest
    assert [p["state"] for p in st["phases"]] == ["active", "waiting", "waiting"]
    assert r.state == "running" and r.phase == 0
    first = [d["device"] for d in st["devices"] if d["phase"] == 1]
    # phase 1 only: nothing of phase 2 is handed out before phase 1 passed
    claims = store.claim("a", limit=100) + store.claim("b", limit=100)
    assert sorted(c.device_id for c in claims) == sorted(first)
    for c in claims:
        ro.report("a" if int(c.device_id, 16) % 2 == 0 else "b", c.rollout_id, c.device_id, ok=True)
    assert ro.status("r1")["phases"][1]["state"] == "active"
    while drive(ro, "a") + drive(ro, "b"):
        pass
    st = ro.status("r1")
    assert st["state"] == "done" and st["reason"] == "all 3 phases passed"
    assert sorted(d["device"] for d in st["devices"] if d["status"] == "succeeded") == devices
    assert [p["state"] for p in st["phases"]] == ["passed"] * 3
    kinds = [e.kind for e in store.events(rollout_id="r1", limit=1000)]
    assert kinds.count("phase-passed") == 3 and kinds[-1] == "rollout-done" and kinds.count("device-succeeded") == 120


def test_too_many_failures_pause_the_rollout_and_resume_retries_them(store: Store) -> None:
    register(store, 100)
    ro = Rollouts(store)
    ro.create("r1", REF, Target(), PHASES)
    fails = {d["device"] for d in ro.status("r1")["devices"] if d["phase"] == 2}
    fails = set(sorted(fails)[:2])  # 2 of phase 2's 9 devices: 0 allowed at 90 % of 9
    drive(ro, "a", fails, limit=1)
    st = ro.status("r1")
    assert st["state"] == "paused" and st["phase"] == 2
    assert st["reason"].startswith("phase 2 (10 %): 1 of 9 devices failed")  # paused at the first failure
    assert store.claim("a") == []  # paused: no more work
    assert [p["state"] for p in st["phases"]] == ["passed", "paused", "waiting"]
    ro.resume("r1", retry_failed=True)
    drive(ro, "a", fails=set(), limit=1)
    st = ro.status("r1")
    assert st["state"] == "done"
    retried = [d for d in st["devices"] if d["device"] in fails]
    assert any(d["attempts"] == 2 for d in retried)


def test_resume_accepting_the_failures(store: Store) -> None:
    register(store, 100)
    ro = Rollouts(store)
    ro.create("r1", REF, Target(), (Phase(100, 0.95),))
    order = [d["device"] for d in ro.status("r1")["devices"]]
    drive(ro, "a", set(order[:6]), limit=100)  # 6 of 100 > 5 allowed
    assert ro.status("r1")["state"] == "paused"
    ro.resume("r1")  # accept the failures seen so far
    drive(ro, "a", limit=100)
    st = ro.status("r1")
    assert st["state"] == "done"
    assert st["phases"][0]["counts"] == {"succeeded": 94, "failed": 6}


def test_manual_pause_resume_abort(store: Store) -> None:
    register(store, 20)
    ro = Rollouts(store)
    ro.create("r1", REF, Target(), (Phase(50, 1.0), Phase(100, 1.0)))
    assert ro.pause("r1").state == "paused"
    assert store.claim("a") == []
    with pytest.raises(InputError, match="only a running"):
        ro.pause("r1")
    assert ro.resume("r1").state == "running"
    (c,) = store.claim("a", limit=1)
    r = ro.abort("r1")
    assert r.state == "aborted" and r.reason == "aborted by an operator"
    assert store.claim("a") == []
    counts = store.member_counts("r1")
    assert counts[0] == {"claimed": 1, "skipped": 9} and counts[1] == {"skipped": 10}
    assert ro.report("a", "r1", c.device_id, ok=True)  # the transfer that was running still reports
    with pytest.raises(InputError, match="only a paused"):
        ro.resume("r1")


def test_targets_by_label_and_percentage(store: Store) -> None:
    register(store, 200, labels=lambda i: ["north"] if i < 50 else ["south"])
    ro = Rollouts(store)
    ro.create("north", REF, Target(labels=("north",)), (Phase(100, 1.0),))
    assert len(store.members("north")) == 50
    ro.create("some", REF, Target(labels=("south",), percent=20), (Phase(100, 1.0),))
    n = len(store.members("some"))
    assert 15 <= n <= 50  # about 20 % of 150, fixed by the hash
    assert {m.device_id for m in store.members("some")} <= {f"{i:024x}" for i in range(50, 200)}
    with pytest.raises(InputError, match="matches no registered device"):
        ro.create("none", REF, Target(labels=("east",)), (Phase(100, 1.0),))
    with pytest.raises(InputError, match="must reach 100"):
        ro.create("bad", REF, Target(), (Phase(10, 1.0),))


def test_a_restarted_instance_sees_the_rollout_where_it_stopped(make_store: Callable[..., Store]) -> None:
    first = make_store()
    register(first, 30)
    ro = Rollouts(first)
    ro.create("r1", REF, Target(), (Phase(10, 1.0), Phase(100, 1.0)))
    (c, *_) = first.claim("a", limit=1, lease_s=30.0, now=1000.0)
    first.save_progress("r1", c.device_id, "web", acked=65536, sector=0x110000, total=100_000)
    first.close()  # the server process dies mid-transfer
    again = make_store()
    st = Rollouts(again).status("r1")
    assert st["state"] == "running" and st["phases"][0]["counts"] == {"claimed": 1, "pending": 2}
    taken = again.claim("a", limit=10, now=1031.0)  # after the lease: the claim comes back, with its progress
    back = next(x for x in taken if x.device_id == c.device_id)
    assert back.progress == {"web": (65536, 0x110000, 100_000)} and back.attempt == 2


def test_two_instances_reporting_at_once_start_the_next_phase_once(make_store: Callable[..., Store]) -> None:
    base = make_store()
    register(base, 200, ("a", "b"))
    Rollouts(base).create("r1", REF, Target(), (Phase(50, 1.0), Phase(100, 1.0)))
    errors: list[BaseException] = []

    def run(inst: str) -> None:
        try:
            mine = make_store()
            mine.listen()
            ro = Rollouts(mine)
            end = time.monotonic() + 60
            while mine.rollout("r1").state == "running" and time.monotonic() < end:  # type: ignore[union-attr]
                if not drive(ro, inst, limit=5):
                    mine.wait(2.0)  # the other instance's reports start the next phase: woken by them
        except Exception as e:  # noqa: BLE001 (reported below, from the main thread)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    st = Rollouts(base).status("r1")
    assert st["state"] == "done"
    assert all(d["status"] == "succeeded" and d["attempts"] == 1 for d in st["devices"])  # nothing done twice
    kinds = [e.kind for e in base.events(rollout_id="r1", limit=10_000)]
    assert kinds.count("phase-passed") == 2 and kinds.count("rollout-done") == 1
