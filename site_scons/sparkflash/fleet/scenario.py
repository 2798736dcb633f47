"""The several-instance scenario that `tools/fleet-demo` shows and `tools/bench fleet` measures:
N light devices connect through HAProxy to a `LocalCluster`, idle, then the instance holding
the most devices is SIGKILLed and its devices reconnect to the others.

Every figure is read from what really happened: the light devices' own connection state and
handshake counters, the fleet database's `devices.instance`, the instances' resident memory.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sparkflash.fleet.lightcore import LightFleet
from sparkflash.fleet.local_services import LocalCluster
from sparkflash.fleet.store import Store

__all__ = ["held_by", "run"]


def held_by(store: Store) -> dict[str, int]:
    """instance -> devices it holds, as the fleet database says."""
    out: dict[str, int] = {}
    for (inst, n) in store.db.execute("SELECT instance, COUNT(*) FROM devices WHERE instance IS NOT NULL GROUP BY instance"):
        out[str(inst)] = int(n)
    return out


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
              timeout: float = 60.0) -> dict[str, Any]:
    """Connect, idle, kill one instance, reconnect; the figures."""
    n = fleet.n
    rss_before = {i.name: i.rss_kib() for i in cluster.instances}

    async def in_store(want: dict[str, int] | None = None) -> bool:
        held = await asyncio.to_thread(held_by, store)
        return held == want if want is not None else sum(held.values()) == n

    t0 = time.monotonic()
    fleet.start()
    up = await fleet.wait_connected(timeout)
    all_connected_s = time.monotonic() - t0 if up == n else None
    store_s = await _until(in_store, timeout)
    await asyncio.sleep(idle_s)
    rss_after = {i.name: i.rss_kib() for i in cluster.instances}
    held = await asyncio.to_thread(held_by, store)
    grown = sum(rss_after.values()) - sum(rss_before.values())
    out: dict[str, Any] = {
        "devices": n, "instances": len(cluster.instances), "connected": up,
        "all_connected_s": None if all_connected_s is None else round(all_connected_s, 3),
        "store_agrees_s": None if store_s is None else round(store_s, 3), "held": held,
        "rss_kib": {"before": rss_before, "after": rss_after},
        "idle_kib_per_device": round(grown / max(1, up), 2),
    }
    if not kill or len(cluster.instances) < 2:
        return out
    victim = cluster.instance(max(held, key=lambda k: held[k]))
    moved = held[victim.name]
    survivors = {i.name for i in cluster.instances if i is not victim}
    before = {d.id: d.stats.handshakes for d in fleet.devices}
    victim.kill()

    def back() -> bool:
        again = sum(d.stats.handshakes > before[d.id] for d in fleet.devices)
        return again >= moved and all(d.connected.is_set() for d in fleet.devices)

    reconnect_s = await _until(back, timeout, 0.02)

    async def moved_in_store() -> bool:
        h = await asyncio.to_thread(held_by, store)
        return sum(h.values()) == n and set(h) <= survivors

    store_after_s = await _until(moved_in_store, timeout)
    out["kill"] = {
        "instance": victim.name, "devices_moved": moved,
        "reconnected_s": None if reconnect_s is None else round(reconnect_s, 3),
        "store_agrees_s": None if store_after_s is None or reconnect_s is None else round(reconnect_s + store_after_s, 3),
        "handshaken_again": sum(d.stats.handshakes > before[d.id] for d in fleet.devices),
        "connected": sum(d.connected.is_set() for d in fleet.devices),
        "held": await asyncio.to_thread(held_by, store),
    }
    k = out["kill"]
    k["nothing_lost"] = (k["connected"] == n and k["handshaken_again"] >= moved
                         and sum(k["held"].values()) == n and set(k["held"]) <= survivors)
    return out
