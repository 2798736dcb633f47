"""What a transport-specific flasher must offer the deploy loop.

A flasher writes one region and can report the device's own checksum (or read-back) of
an address range. The loop in `deploy.run` never marks a region done on the flasher's
word alone: it compares the device-side digest with the signed manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sparkflash.manifest.model import Region

__all__ = ["ProgressFn", "EventFn", "WriteReport", "Flasher", "RegionResult", "DeployResult", "Unverifiable",
           "DEFAULT_ACCEPTED", "VERIFIED_ONLY", "PROVES"]

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)
EventFn = Callable[[dict[str, Any]], None]


# What each status proves (said in every summary line and JSON region record).
PROVES = {
    "verified": "the device's own digest (or a read-back) of the range matched the signed manifest",
    "unchanged": "the device's own digest matched before anything was written; nothing was sent",
}
DEFAULT_ACCEPTED = frozenset({"verified", "unchanged", "booted", "acknowledged"})
VERIFIED_ONLY = frozenset({"verified", "unchanged"})


class Unverifiable(Exception):
    """Raised by `Flasher.device_digest` when the device cannot report a digest of a region.

    `status` is the strongest honest claim ("booted", "acknowledged" or "sent") and
    `proves` one sentence saying what that status proves."""

    def __init__(self, status: str, proves: str) -> None:
        if status not in ("booted", "acknowledged", "sent"):
            raise ValueError(f"Unverifiable status must be booted, acknowledged or sent, not {status!r}")
        super().__init__(f"{status}: {proves}")
        self.status, self.proves = status, proves


@dataclass
class WriteReport:
    bytes_sent: int = 0
    sectors_erased: int = 0
    sectors_skipped: int = 0  # unchanged sectors left alone (DFU read-back compare)
    retries: int = 0


class Flasher(Protocol):
    """One connected device, reached by one transport."""

    via: str  # "dfu" | "serial" | "ota"

    def device_id(self) -> str: ...

    def write_region(self, region: Region, data: bytes, progress: ProgressFn) -> WriteReport: ...

    def device_digest(self, region: Region) -> tuple[int, str]:
        """(crc32, sha256 hex) of region.address..+size as stored on the device now;
        raises Unverifiable when the device cannot tell."""
        ...

    def finish(self) -> None:
        """After all regions: e.g. DFU leave, serial firmware reset; idempotent."""
        ...


@dataclass
class RegionResult:
    name: str
    address: int
    size: int
    status: str  # "verified" | "unchanged" | "booted" | "acknowledged" | "sent" | "failed" | "skipped"
    seconds: float = 0.0
    report: WriteReport = field(default_factory=WriteReport)
    error: str | None = None
    exit_code: int = 0  # of the error that failed it (errors.py), so the CLI exits with the cause
    proves: str | None = None  # what the status proves (PROVES, or the flasher's Unverifiable)

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.name,
            "address": self.address,
            "size": self.size,
            "status": self.status,
            "proves": self.proves if self.proves is not None else PROVES.get(self.status),
            "seconds": round(self.seconds, 3),
            "bytes_sent": self.report.bytes_sent,
            "sectors_erased": self.report.sectors_erased,
            "sectors_skipped": self.report.sectors_skipped,
            "retries": self.report.retries,
            "error": self.error,
        }


@dataclass
class DeployResult:
    release: str
    version: str
    device: str
    via: str
    regions: list[RegionResult]
    accepted: frozenset[str] = DEFAULT_ACCEPTED  # statuses that count as success

    @property
    def ok(self) -> bool:
        return all(r.status in self.accepted for r in self.regions)

    @property
    def exit_code(self) -> int:
        """0, or the exit code of the first failure (3 = verify, 4 = device, 5 = protocol);
        3 for a region whose status is not accepted (e.g. "sent" without --accept-unverified)."""
        if self.ok:
            return 0
        return next((r.exit_code for r in self.regions if r.status == "failed" and r.exit_code), 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "version": self.version,
            "device": self.device,
            "via": self.via,
            "ok": self.ok,
            "accepted": sorted(self.accepted),
            "regions": [r.to_json() for r in self.regions],
        }
