"""The several-instance scenario that `tools/fleet-demo` shows and `tools/bench fleet` measures:
N light devices connect through HAProxy to a `LocalCluster`, idle; then either the instance
holding the most devices is SIGKILLed and its devices reconnect to the others, or (with
`rollout=`) a phased rollout is created through that instance's admin API and runs on every
instance, and the instance is SIGKILLed once the last phase is under way: its devices
reconnect elsewhere and their deployments resume there.

Every figure is read from what really happened: the light devices' own connection state,
handshake counters and flash writes, the fleet database (`devices.instance`, the rollout's
members sampled every 0.2 s for the per-phase timeline), the instances' resident memory.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.request import Request, urlopen

from sparkflash.fleet.lightcore import LightFleet
from sparkflash.fleet.local_services import LocalCluster
from sparkflash.fleet.store import Store

__all__ = ["admin_call", "held_by", "run"]


def admin_call(admin: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One admin API request (blocking)."""
    req = Request(admin + path, method=method, data=None if body is None else json.dumps(body).encode(),
                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urlopen(req, timeout=30) as r:
        doc: dict[str, Any] = json.load(r)
    return doc


def held_by(store: Store) -> dict[str, int]:
    """instance -> devices it holds, as the fleet database says."""
    out: dict[str, int] = {}
    for (inst, n) in store.db.execute("SELECT instance, COUNT(*) FROM devices WHERE instance IS NOT NULL GROUP BY instance"):
        out[str(inst)] = int(n)
    return out


_DB = threading.Lock()  # one store connection, used from worker threads one call at a time


async def _db(fn: Callable[..., Any], *args: Any) -> Any:
    def locked() -> Any:
        with _DB:
            return fn(*args)

    return await asyncio.to_thread(locked)


async def _until(check: Any, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until `check()` (sync or async) is true, or None after `timeout`."""
    t0 = time.monotonic()
    while True:
        v = check()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None
        await asyncio.sleep(step)


async def run(cluster: LocalCluster, store: Store, fleet: LightFleet, *, kill: bool = True, idle_s: float = 2.0,
              timeout: float = 60.0, rollout: dict[str, Any] | None = None,
              rollout_timeout: float = 600.0) -> dict[str, Any]:
    """Connect, idle, kill one instance (during `rollout`, the admin API's POST /v1/rollouts body,
    if given), reconnect; the figures."""
    n = fleet.n
    rss_before = {i.name: i.rss_kib() for i in cluster.instances}

    async def in_store(want: dict[str, int] | None = None) -> bool:
        held: dict[str, int] = await _db(held_by, store)
        return held == want if want is not None else sum(held.values()) == n

    t0 = time.monotonic()
    fleet.start()
    up = await fleet.wait_connected(timeout)
    all_connected_s = time.monotonic() - t0 if up == n else None
    store_s = await _until(in_store, timeout)
    await asyncio.sleep(idle_s)
    rss_after = {i.name: i.rss_kib() for i in cluster.instances}
    held = await _db(held_by, store)
    grown = sum(rss_after.values()) - sum(rss_before.values())
    out: dict[str, Any] = {
        "devices": n, "instances": len(cluster.instances), "connected": up,
        "all_connected_s": None if all_connected_s is None else round(all_connected_s, 3),
        "store_agrees_s": None if store_s is None else round(store_s, 3), "held": held,
        "rss_kib": {"before": rss_before, "after": rss_after},
        "idle_kib_per_device": round(grown / max(1, up), 2),
    }
    victim = cluster.instance(max(held, key=lambda k: held[k]))
    if rollout is not None:
        out["rollout"] = await _rollout(cluster, store, fleet, victim if kill and len(cluster.instances) > 1 else None,
                                        rollout, rollout_timeout, out)
        return out
    if not kill or len(cluster.instances) < 2:
        return out
    out["kill"] = await _kill(cluster, store, fleet, victim, timeout)
    return out


async def _kill(cluster: LocalCluster, store: Store, fleet: LightFleet, victim: Any, timeout: float) -> dict[str, Any]:
    """SIGKILL `victim`; how its devices came back."""
    n = fleet.n
    held = await _db(held_by, store)
    moved = held.get(victim.name, 0)
    survivors = {i.name for i in cluster.instances if i is not victim}
    before = {d.id: d.stats.handshakes for d in fleet.devices}
    victim.kill()

    def back() -> bool:
        again = sum(d.stats.handshakes > before[d.id] for d in fleet.devices)
        return again >= moved and all(d.connected.is_set() for d in fleet.devices)

    reconnect_s = await _until(back, timeout, 0.02)

    async def moved_in_store() -> bool:
        h: dict[str, int] = await _db(held_by, store)
        return sum(h.values()) == n and set(h) <= survivors

    store_after_s = await _until(moved_in_store, timeout)
    k = {
        "instance": victim.name, "devices_moved": moved,
        "reconnected_s": None if reconnect_s is None else round(reconnect_s, 3),
        "store_agrees_s": None if store_after_s is None or reconnect_s is None else round(reconnect_s + store_after_s, 3),
        "handshaken_again": sum(d.stats.handshakes > before[d.id] for d in fleet.devices),
        "connected": sum(d.connected.is_set() for d in fleet.devices),
        "held": await _db(held_by, store),
    }
    k["nothing_lost"] = (k["connected"] == n and k["handshaken_again"] >= moved
                         and sum(k["held"].values()) == n and set(k["held"]) <= survivors)
    return k


def _sample(store: Store, rid: str) -> tuple[str, int, dict[int, dict[str, int]]]:
    r = store.rollout(rid)
    assert r is not None
    return r.state, r.phase, store.member_counts(rid)


async def _rollout(cluster: LocalCluster, store: Store, fleet: LightFleet, victim: Any, body: dict[str, Any],
                   timeout: float, out: dict[str, Any]) -> dict[str, Any]:
    """Create the rollout through `victim` (or the first instance), follow it to its end, SIGKILL `victim`
    once its last phase is a tenth done; the timeline and what the devices' flash saw."""
    via = victim or cluster.instances[0]
    t0 = time.monotonic()
    made = await asyncio.to_thread(admin_call, via.admin, via.token, "POST", "/v1/rollouts", body)
    rid, last = str(made["id"]), len(made["phases"]) - 1
    timeline: list[dict[str, Any]] = []
    phase_times: dict[int, dict[str, float]] = {}
    kill_task: asyncio.Task[dict[str, Any]] | None = None
    state = "running"
    while time.monotonic() - t0 < timeout:
        state, phase, counts = await _db(_sample, store, rid)
        t = round(time.monotonic() - t0, 3)
        total = {k: sum(c.get(k, 0) for c in counts.values()) for k in ("succeeded", "failed", "claimed", "pending")}
        timeline.append({"t": t, "phase": phase + 1, **total})
        for p, c in counts.items():
            pt = phase_times.setdefault(p, {})
            n = sum(c.values())
            if "start_s" not in pt and any(c.get(k) for k in ("claimed", "succeeded", "failed")):
                pt["start_s"] = t
            if "end_s" not in pt and c.get("succeeded", 0) + c.get("failed", 0) == n:
                pt["end_s"] = t
        if kill_task is None and victim is not None and phase == last:
            c = counts.get(last, {})
            started = phase_times.get(last, {}).get("start_s")
            # a tenth done, or transfers in flight for 0.3 s (a small fleet may finish between two samples)
            if c.get("claimed") and (c.get("succeeded", 0) * 10 >= sum(c.values())
                                     or (started is not None and t - started >= 0.3)):
                kill_task = asyncio.create_task(_kill(cluster, store, fleet, victim, 60.0))
                timeline[-1]["kill"] = victim.name
        if state != "running":
            break
        await asyncio.sleep(0.2)
    reach_s = next((x["t"] for x in timeline if x["succeeded"] == fleet.n), None)
    members = await _db(store.members, rid)
    rewritten = sum(n - 1 for d in fleet.devices for n in d.flash.write_counts.values() if n > 1)
    doc: dict[str, Any] = {
        "id": rid, "state": state, "devices": len(members), "via": via.name,
        "succeeded": sum(m.status == "succeeded" for m in members), "failed": sum(m.status == "failed" for m in members),
        "resumed": sum(m.attempts > 1 for m in members), "reach_all_s": reach_s,
        "phases": [{"phase": p + 1, "percent": made["phases"][p]["percent"], "devices": made["phases"][p]["devices"],
                    **phase_times.get(p, {})} for p in range(last + 1)],
        "chunks_written_again": rewritten, "reason": (await _db(store.rollout, rid)).reason,
        "errors": sorted({str(m.detail.get("error") or [r.get("error") for r in m.detail.get("regions", [])])[:300]
                          for m in members if m.status == "failed"})[:5],
        "timeline": timeline}
    if kill_task is not None:
        out["kill"] = await kill_task
    return doc
