"""Which server instance holds which device: `devices.instance`, under a lease renewed by heartbeats.

Behind a load balancer a device may connect to any instance. The instance that holds its
connection writes its name into the device's row (`Store.device_seen`); each heartbeat then
renews `last_seen` of every row it holds in one statement, and that timestamp is the lease.
An instance that dies without a word (SIGKILL, a lost machine) stops renewing: once its rows
are older than the lease, any live instance's sweep releases them (`instance` NULL), so the
store never keeps claiming a device is connected through a dead process. A device that
reconnects elsewhere is taken over at once by the new instance's `device_seen`; the lease
only matters for the devices that do not come back. Instances compare `last_seen` with their
own clocks: keep them within a small part of the lease (NTP does).

No table of its own: the rows of the devices an instance holds are its heartbeat, so an
instance with no devices is invisible, which is all the fleet needs to know about it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sparkflash.errors import InputError
from sparkflash.fleet import ids
from sparkflash.fleet.store import Store

__all__ = ["DEFAULT_LEASE_S", "InstanceInfo", "Presence", "instances"]

log = logging.getLogger("sparkflash.fleet")
DEFAULT_LEASE_S = 30.0
_CHUNK = 500  # ids per IN (...) list: well inside SQLite's and PostgreSQL's parameter limits


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _marks(part: list[str]) -> str:
    return ", ".join("?" * len(part))


@dataclass(frozen=True)
class InstanceInfo:
    name: str
    devices: int  # rows naming it
    heartbeat_at: float  # the newest renewal of those rows
    alive: bool  # renewed within the lease


def instances(store: Store, *, lease_s: float = DEFAULT_LEASE_S, now: float | None = None) -> list[InstanceInfo]:
    """Every instance that holds at least one device, as the store sees it."""
    when = time.time() if now is None else now
    rows = store.db.execute("SELECT instance, COUNT(*), MAX(last_seen) FROM devices WHERE instance IS NOT NULL "
                            "GROUP BY instance ORDER BY instance")
    return [InstanceInfo(r[0], int(r[1]), float(r[2] or 0.0), float(r[2] or 0.0) >= when - lease_s) for r in rows]


class Presence:
    """One instance's side of the lease: record connections, renew, release the dead's rows."""

    def __init__(self, store: Store, instance: str, *, lease_s: float = DEFAULT_LEASE_S) -> None:
        if not 1.0 <= lease_s <= 3600.0:
            raise InputError(f"instance lease {lease_s!r} s must be 1-3600 s")
        self.store, self.instance, self.lease_s = store, ids.instance_id(instance), float(lease_s)
        self._unknown: set[str] = set()

    def begin(self) -> int:
        """At start: rows still naming this instance are from an earlier life of it; release them."""
        return self.store.instance_gone(self.instance)

    def apply(self, changes: Mapping[str, str | None], *, now: float | None = None) -> list[str]:
        """device -> its generation ("os"/"ccl": connected here) or None (its connection here ended),
        in one transaction. The devices not registered in the store (logged once each)."""
        when = time.time() if now is None else now
        unknown = []
        with self.store.transaction():
            for dev, generation in changes.items():
                if generation is None:
                    self.store.device_left(dev, self.instance, now=when)
                elif not self.store.device_seen(dev, self.instance, generation=generation, now=when):
                    unknown.append(dev)
        for dev in unknown:
            if dev not in self._unknown and len(self._unknown) < 10_000:
                self._unknown.add(dev)
                log.warning("device %s is connected to %s but not registered in the fleet database", dev, self.instance)
        return unknown

    def heartbeat(self, held: Collection[str], *, now: float | None = None) -> int:
        """Renew the lease on the rows naming this instance and bring them in line with `held` (the
        devices connected here now): rows of devices no longer here are released, devices here whose
        row a sweep released (this instance was too slow to renew) are taken back. How many rows
        name it afterwards."""
        when = time.time() if now is None else now
        mine = {ids.device_id(d) for d in held}
        with self.store.transaction():
            named = {r[0] for r in self.store.db.execute("SELECT id FROM devices WHERE instance = ?", (self.instance,))}
            for part in _chunks(sorted(named - mine)):
                self.store.db.execute(f"UPDATE devices SET instance = NULL WHERE instance = ? AND id IN ({_marks(part)})",
                                      (self.instance, *part))
            renewed = {r[0] for r in self.store.db.execute(
                "UPDATE devices SET last_seen = ? WHERE instance = ? RETURNING id", (when, self.instance))}
            n = len(renewed)
            for part in _chunks(sorted(mine - renewed)):
                n += len(self.store.db.execute(
                    f"UPDATE devices SET instance = ?, last_seen = ? WHERE instance IS NULL AND id IN ({_marks(part)}) "
                    "RETURNING id", (self.instance, when, *part)))
        return n

    def sweep(self, *, now: float | None = None) -> dict[str, int]:
        """Release the rows of instances whose lease ran out: instance -> devices released."""
        when = time.time() if now is None else now
        gone: dict[str, int] = {}
        with self.store.transaction():
            cutoff = when - self.lease_s
            for (inst,) in self.store.db.execute("SELECT DISTINCT instance FROM devices WHERE instance IS NOT NULL AND "
                                                 "instance <> ? AND last_seen < ?", (self.instance, cutoff)):
                # the condition again in the UPDATE: a device that just reconnected has a fresh last_seen
                n = len(self.store.db.execute("UPDATE devices SET instance = NULL WHERE instance = ? AND last_seen < ? "
                                              "RETURNING id", (inst, cutoff)))
                if n:
                    gone[inst] = n
            for inst, n in sorted(gone.items()):
                self.store.add_event("instance-expired", detail={"instance": inst, "devices": n, "by": self.instance},
                                     now=when)
        for inst, n in sorted(gone.items()):
            log.warning("instance %s renewed nothing for %g s: its %d device(s) released", inst, self.lease_s, n)
        return gone

    def end(self) -> int:
        """A clean stop: every device of this instance is released at once (no lease to wait for)."""
        return self.store.instance_gone(self.instance)
