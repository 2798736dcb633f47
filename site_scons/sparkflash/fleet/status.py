"""What the status page shows, read from the fleet store in one go: rollouts with their phases
and thresholds, devices with generation, capabilities, last verified release and the progress
of their transfer, instances, recent events. Read-only; a few queries whatever the fleet's size
(progress is summed in SQL, not per device), and the device list is bounded.
"""

from __future__ import annotations

import time
from typing import Any

from sparkflash.fleet import rollout as machine
from sparkflash.fleet.instances import DEFAULT_LEASE_S, instances
from sparkflash.fleet.store import Store

__all__ = ["status_doc"]

ACTIVE = ("running", "paused")


def _progress(store: Store) -> tuple[dict[str, tuple[int, int]], dict[str, dict[str, Any]]]:
    """Bytes acknowledged / to send, per active rollout and per device (its newest active membership)."""
    rows = store.db.execute(
        "SELECT rd.rollout_id, rd.device_id, rd.status, rd.attempts, COALESCE(SUM(p.acked), 0), COALESCE(SUM(p.total), 0), "
        "r.created_at FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id "
        "LEFT JOIN progress p ON p.rollout_id = rd.rollout_id AND p.device_id = rd.device_id "
        "WHERE r.state IN ('running', 'paused') "
        "GROUP BY rd.rollout_id, rd.device_id, rd.status, rd.attempts, r.created_at ORDER BY r.created_at, rd.rollout_id")
    per_rollout: dict[str, tuple[int, int]] = {}
    per_device: dict[str, dict[str, Any]] = {}
    for rid, dev, status, attempts, acked, total, _ in rows:
        a, t = per_rollout.get(rid, (0, 0))
        per_rollout[rid] = (a + int(acked), t + int(total))
        per_device[dev] = {"rollout": rid, "status": status, "attempts": int(attempts), "acked": int(acked),
                           "total": int(total)}
    return per_rollout, per_device


def status_doc(store: Store, *, now: float | None = None, lease_s: float = DEFAULT_LEASE_S, device_limit: int = 1000,
               rollout_limit: int = 50, event_limit: int = 20) -> dict[str, Any]:
    when = time.time() if now is None else now
    per_rollout, per_device = _progress(store)
    rollouts = []
    for r in sorted(store.rollouts(), key=lambda r: (r.state not in ACTIVE, -r.created_at))[:rollout_limit]:
        counts = store.member_counts(r.id)
        by_status: dict[str, int] = {}
        for c in counts.values():
            for k, v in c.items():
                by_status[k] = by_status.get(k, 0) + v
        acked, total = per_rollout.get(r.id, (0, 0))
        rollouts.append({"id": r.id, "release": r.release_ref, "state": r.state, "phase": r.phase + 1,
                         "reason": r.reason, "target": r.target.as_json(), "created_at": r.created_at,
                         "updated_at": r.updated_at, "devices": sum(by_status.values()), "counts": by_status,
                         "bytes": {"acked": acked, "total": total}, "phases": machine.phase_status(r, counts)})
    devices = store.devices()
    shown = []
    for d in devices[:device_limit]:
        connected = d.instance is not None and d.last_seen is not None and d.last_seen >= when - lease_s
        rel = None
        if d.release is not None:
            rel = {"name": d.release[0], "version": d.release[1], "sha256": d.release[2],
                   "verified_at": d.release_verified_at}
        shown.append({"id": d.id, "generation": d.generation, "capabilities": list(d.capabilities),
                      "labels": list(d.labels), "instance": d.instance if connected else None, "connected": connected,
                      "last_seen": d.last_seen, "release": rel, "transfer": per_device.get(d.id)})
    return {"generated_at": when, "lease_s": lease_s,
            "instances": [{"name": i.name, "devices": i.devices, "heartbeat_at": i.heartbeat_at, "alive": i.alive}
                          for i in instances(store, lease_s=lease_s, now=when)],
            "rollouts": rollouts, "devices": shown, "device_count": len(devices),
            "connected_count": sum(1 for d in devices if d.instance is not None and d.last_seen is not None
                                   and d.last_seen >= when - lease_s),
            "events": [{"time": e.time, "kind": e.kind, "rollout": e.rollout_id, "device": e.device_id,
                        "detail": e.detail} for e in store.events(limit=event_limit)]}
