"""Rollouts on a store: the pure machine of `fleet.rollout`, applied in one transaction each.

Every change reads the rollout with its row held (PostgreSQL `FOR UPDATE`; SQLite's
`BEGIN IMMEDIATE` holds the whole file), decides, and writes the step, so two instances
reporting outcomes at the same moment cannot both start the next phase or miss a pause.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sparkflash.errors import InputError
from sparkflash.fleet import rollout as machine
from sparkflash.fleet.records import Phase, Rollout, Target
from sparkflash.fleet.store import Store, check_phases

__all__ = ["DEFAULT_PHASES", "Rollouts"]

DEFAULT_PHASES = (Phase(1.0, 1.0), Phase(10.0, 0.95), Phase(100.0, 0.95))
ALL = Target()  # every registered device


class Rollouts:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store, self.clock = store, clock

    def create(self, rollout_id: str, release_ref: str, target: Target = ALL,
               phases: Sequence[Phase] = DEFAULT_PHASES, *, options: dict[str, Any] | None = None) -> Rollout:
        """Choose the devices now (membership is fixed at creation) and start phase 1."""
        ph = check_phases(phases)
        with self.store.transaction():
            ordered = machine.select(rollout_id, self.store.devices(), target)
            if not ordered:
                raise InputError(f"rollout {rollout_id}: the target matches no registered device")
            self.store.create_rollout(rollout_id, release_ref, target, ph, machine.assign_phases(ordered, ph),
                                      options=options, now=self.clock())
            return self.evaluate(rollout_id)

    def _get(self, rollout_id: str) -> Rollout:
        r = self.store.rollout(rollout_id, lock=True)
        if r is None:
            raise InputError(f"rollout {rollout_id} does not exist")
        return r

    def _apply(self, r: Rollout, step: machine.Step) -> Rollout:
        now = self.clock()
        for k in step.activate:
            self.store.set_members(r.id, phase=k, from_status="waiting", to_status="pending", now=now)
        if step.retry is not None:
            self.store.set_members(r.id, phase=step.retry, from_status="failed", to_status="pending", now=now)
        if step.skip:
            for k in range(len(r.phases)):
                for s in ("waiting", "pending"):
                    self.store.set_members(r.id, phase=k, from_status=s, to_status="skipped", now=now)
        if (step.state, step.phase, step.forgiven, step.reason) != (r.state, r.phase, r.forgiven, r.reason):
            self.store.set_rollout(r.id, state=step.state, phase=step.phase, forgiven=step.forgiven,
                                   reason=step.reason, now=now)
        for kind, detail in step.events:
            self.store.add_event(kind, rollout_id=r.id, detail=detail | ({"reason": step.reason} if step.reason else {}),
                                 now=now)
        out = self.store.rollout(r.id)
        assert out is not None
        return out

    def evaluate(self, rollout_id: str) -> Rollout:
        with self.store.transaction():
            r = self._get(rollout_id)
            return self._apply(r, machine.decide(r, self.store.member_counts(r.id)))

    def report(self, instance: str, rollout_id: str, device_id: str, *, ok: bool,
               detail: dict[str, Any] | None = None) -> bool:
        """A device's outcome from the instance holding its claim; False if the claim was lost
        (another instance took it over): then nothing is written."""
        with self.store.transaction():
            r = self._get(rollout_id)
            if not self.store.finish(instance, rollout_id, device_id, ok=ok, detail=detail or {}, now=self.clock()):
                return False
            self.store.add_event("device-succeeded" if ok else "device-failed", rollout_id=rollout_id,
                                 device_id=device_id, detail=detail or {}, now=self.clock())
            self._apply(r, machine.decide(r, self.store.member_counts(r.id)))
            return True

    def pause(self, rollout_id: str) -> Rollout:
        with self.store.transaction():
            r = self._get(rollout_id)
            return self._apply(r, machine.pause(r))

    def resume(self, rollout_id: str, *, retry_failed: bool = False) -> Rollout:
        with self.store.transaction():
            r = self._get(rollout_id)
            resumed = self._apply(r, machine.resume(r, self.store.member_counts(r.id), retry_failed=retry_failed))
            return self._apply(resumed, machine.decide(resumed, self.store.member_counts(r.id)))

    def abort(self, rollout_id: str) -> Rollout:
        with self.store.transaction():
            r = self._get(rollout_id)
            return self._apply(r, machine.abort(r))

    def status(self, rollout_id: str) -> dict[str, Any]:
        """The rollout, each phase (threshold, counts, state) and each device (status, attempts, progress)."""
        r = self.store.rollout(rollout_id)
        if r is None:
            raise InputError(f"rollout {rollout_id} does not exist")
        counts = self.store.member_counts(r.id)
        devices = [{"device": m.device_id, "phase": m.phase + 1, "status": m.status, "attempts": m.attempts,
                    "detail": m.detail, "progress": {k: list(v) for k, v in self.store.progress(r.id, m.device_id).items()}}
                   for m in self.store.members(r.id)]
        return {"id": r.id, "release": r.release_ref, "state": r.state, "phase": r.phase + 1, "reason": r.reason,
                "target": r.target.as_json(), "phases": machine.phase_status(r, counts), "devices": devices}
