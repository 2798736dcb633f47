"""The rows the fleet store hands out: plain frozen values, decoded and checked once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MEMBER_STATES", "ROLLOUT_STATES", "Claim", "Device", "Event", "Member", "Phase", "Rollout", "Target"]

# A member: waiting (its phase is not active yet) -> pending (may be claimed) -> claimed (an
# instance works on it under a lease) -> succeeded | failed; skipped when the rollout is aborted.
MEMBER_STATES = ("waiting", "pending", "claimed", "succeeded", "failed", "skipped")
ROLLOUT_STATES = ("running", "paused", "aborted", "done")


@dataclass(frozen=True)
class Device:
    id: str
    public_key: str  # PEM of the device's RSA-1024 key
    generation: str | None = None  # "ccl" (0.3.x) or "os" (Device OS), from the handshake
    capabilities: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    instance: str | None = None  # the server instance holding its connection, if any
    last_seen: float | None = None
    release: tuple[str, str, str] | None = None  # (name, version, sha256) from its release record, verified
    release_verified_at: float | None = None


@dataclass(frozen=True)
class Phase:
    percent: float  # of the rollout's targeted devices reached once this phase is active (cumulative)
    threshold: float  # fraction of this phase's devices that must succeed (0..1)

    def as_json(self) -> dict[str, float]:
        return {"percent": self.percent, "threshold": self.threshold}


@dataclass(frozen=True)
class Target:
    devices: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    percent: float = 100.0  # of the devices matched by ids/labels (all devices when both are empty)

    def as_json(self) -> dict[str, Any]:
        return {"devices": list(self.devices), "labels": list(self.labels), "percent": self.percent}


@dataclass(frozen=True)
class Rollout:
    id: str
    release_ref: str
    target: Target
    phases: tuple[Phase, ...]
    state: str  # one of ROLLOUT_STATES
    phase: int  # the active phase (0-based)
    forgiven: int = 0  # failures in the active phase accepted by a resume
    reason: str | None = None  # why it paused / aborted / finished
    created_at: float = 0.0
    updated_at: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)  # how to deploy (cloud.deployments reads it)


@dataclass(frozen=True)
class Member:
    rollout_id: str
    device_id: str
    phase: int
    status: str  # one of MEMBER_STATES
    detail: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    claimed_by: str | None = None
    lease_until: float | None = None


@dataclass(frozen=True)
class Claim:
    """Work handed to one instance: deploy `release_ref` to `device_id`, resuming from `progress`."""

    rollout_id: str
    device_id: str
    release_ref: str
    lease_until: float
    attempt: int
    progress: dict[str, tuple[int, int, int]]  # region -> (acked bytes, last acked sector, total)


@dataclass(frozen=True)
class Event:
    id: int
    time: float
    kind: str
    rollout_id: str | None
    device_id: str | None
    detail: dict[str, Any]
