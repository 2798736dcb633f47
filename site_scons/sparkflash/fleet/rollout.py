"""The rollout state machine, pure: selection, phases, thresholds and commands, no I/O.

Selection is deterministic: each device's place in a rollout is SHA-256(rollout id, device
id) read as a fraction in [0, 1). A target percentage keeps the devices whose fraction is
below it (so a growing fleet keeps the ones already chosen); phases then take the chosen
devices in that order, phase k covering the first ceil(n * percent_k / 100). A phase fails
as soon as its threshold can no longer be met: more failures than floor(n * (1 - threshold))
pause the rollout; once every device of the phase has an outcome, the next phase starts.
`decide` and the commands return a `Step`: what to write, never writing it themselves.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sparkflash.errors import InputError
from sparkflash.fleet.records import Device, Phase, Rollout, Target

__all__ = [
    "Step",
    "abort",
    "assign_phases",
    "bucket",
    "decide",
    "failure_budget",
    "pause",
    "phase_status",
    "resume",
    "select",
]

UNFINISHED = ("waiting", "pending", "claimed")


def bucket(rollout_id: str, device_id: str) -> float:
    """The device's fixed place in this rollout, in [0, 1)."""
    h = hashlib.sha256(f"{rollout_id}\0{device_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def select(rollout_id: str, devices: Sequence[Device], target: Target) -> list[str]:
    """The targeted device ids in rollout order: by id or label (all devices when neither is given),
    then the target percentage by bucket."""
    wanted_ids, wanted_labels = set(target.devices), set(target.labels)
    known = {d.id for d in devices}
    missing = sorted(wanted_ids - known)
    if missing:
        raise InputError(f"rollout {rollout_id}: device {missing[0]} is not registered"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    chosen = [d.id for d in devices
              if (not wanted_ids and not wanted_labels) or d.id in wanted_ids or wanted_labels & set(d.labels)]
    keep = [d for d in chosen if bucket(rollout_id, d) < target.percent / 100.0]
    return sorted(keep, key=lambda d: (bucket(rollout_id, d), d))


def assign_phases(ordered: Sequence[str], phases: Sequence[Phase]) -> list[tuple[str, int]]:
    """(device, phase) for devices in rollout order: phase k ends at ceil(n * percent_k / 100)."""
    n, out, k = len(ordered), [], 0
    ends = [math.ceil(n * p.percent / 100.0 - 1e-9) for p in phases]
    for i, dev in enumerate(ordered):
        while i >= ends[k]:
            k += 1
        out.append((dev, k))
    return out


def failure_budget(total: int, threshold: float) -> int:
    """How many of `total` devices may fail with `threshold` of them still succeeding."""
    return math.floor(total * (1.0 - threshold) + 1e-9)


@dataclass(frozen=True)
class Step:
    """What the driver writes, in one transaction."""

    state: str
    phase: int
    forgiven: int
    reason: str | None
    activate: tuple[int, ...] = ()  # phases whose waiting members become pending
    retry: int | None = None  # phase whose failed members become pending again
    skip: bool = False  # every waiting/pending member becomes skipped (abort)
    events: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)

    @classmethod
    def same(cls, r: Rollout) -> Step:
        return cls(r.state, r.phase, r.forgiven, r.reason)


def _n(counts: Mapping[str, int], *states: str) -> int:
    return sum(counts.get(s, 0) for s in states)


def decide(r: Rollout, counts: Mapping[int, Mapping[str, int]]) -> Step:
    """After outcomes came in: pause on too many failures, or move past finished phases
    (an empty phase passes at once; a newly started phase's waiting members are unfinished)."""
    if r.state != "running":
        return Step.same(r)
    phase, forgiven = r.phase, r.forgiven
    activate: list[int] = []
    events: list[tuple[str, dict[str, Any]]] = []
    while True:
        c = counts.get(phase, {})
        total = sum(c.values())
        failed = _n(c, "failed") - forgiven
        p = r.phases[phase]
        budget = failure_budget(total, p.threshold)
        if failed > budget:
            reason = (f"phase {phase + 1} ({p.percent:g} %): {failed} of {total} devices failed, more than the "
                      f"{budget} its {p.threshold:.0%} success threshold allows")
            events.append(("rollout-paused", {"phase": phase, "failed": failed, "total": total, "auto": True}))
            return Step("paused", phase, forgiven, reason, tuple(activate), events=tuple(events))
        if _n(c, *UNFINISHED):
            return Step("running", phase, forgiven, r.reason, tuple(activate), events=tuple(events))
        events.append(("phase-passed", {"phase": phase, "succeeded": _n(c, "succeeded"), "total": total}))
        if phase + 1 == len(r.phases):
            events.append(("rollout-done", {}))
            return Step("done", phase, forgiven, f"all {len(r.phases)} phases passed", tuple(activate),
                        events=tuple(events))
        phase, forgiven = phase + 1, 0
        activate.append(phase)


def pause(r: Rollout, why: str = "paused by an operator") -> Step:
    if r.state != "running":
        raise InputError(f"rollout {r.id} is {r.state}: only a running rollout can be paused")
    return Step("paused", r.phase, r.forgiven, why, events=(("rollout-paused", {"phase": r.phase, "auto": False}),))


def resume(r: Rollout, counts: Mapping[int, Mapping[str, int]], *, retry_failed: bool = False) -> Step:
    """Run again. The failures that paused it are either retried or accepted (forgiven) for this phase."""
    if r.state != "paused":
        raise InputError(f"rollout {r.id} is {r.state}: only a paused rollout can be resumed")
    failed = _n(counts.get(r.phase, {}), "failed")
    ev = ("rollout-resumed", {"phase": r.phase, "retry_failed": retry_failed, "failed": failed})
    if retry_failed:
        return Step("running", r.phase, 0, None, retry=r.phase, events=(ev,))
    return Step("running", r.phase, failed, None, events=(ev,))


def abort(r: Rollout, why: str = "aborted by an operator") -> Step:
    if r.state in ("aborted", "done"):
        raise InputError(f"rollout {r.id} is {r.state} already")
    return Step("aborted", r.phase, r.forgiven, why, skip=True, events=(("rollout-aborted", {"phase": r.phase}),))


def phase_status(r: Rollout, counts: Mapping[int, Mapping[str, int]]) -> list[dict[str, Any]]:
    """Per phase: its percent and threshold, device counts by status, and where it stands."""
    out = []
    for k, p in enumerate(r.phases):
        c = dict(counts.get(k, {}))
        total = sum(c.values())
        if k < r.phase or (k == r.phase and r.state == "done"):
            where = "passed"
        elif k == r.phase:
            where = {"running": "active", "paused": "paused", "aborted": "aborted"}.get(r.state, r.state)
        else:
            where = "aborted" if r.state == "aborted" else "waiting"
        out.append({"phase": k + 1, "percent": p.percent, "threshold": p.threshold, "devices": total,
                    "failure_budget": failure_budget(total, p.threshold), "counts": c, "state": where})
    return out
