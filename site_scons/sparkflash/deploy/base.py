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
           "PROVES", "DEFAULT_ACCEPTED", "VERIFIED_ONLY", "accepted_statuses"]

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)
EventFn = Callable[[dict[str, Any]], None]


# What each status proves (the summary line and JSON say it next to the status).
PROVES = {
    "verified": "the device's own digest (or a read-back) of the range equals the signed manifest",
    "unchanged": "the device's digest already equalled the manifest; nothing was written",
    "booted": "the device rebooted into new firmware (the bootloader's 'OTA flashed' flag); no digest of it",
    "acknowledged": "the device accepted every chunk's CRC-32; nothing read the whole range back",
    "sent": "the bytes were sent; the device confirmed nothing",
    "failed": "the region was not written as intended",
    "skipped": "not attempted (an earlier region failed)",
}
DEFAULT_ACCEPTED = frozenset({"verified", "unchanged", "booted", "acknowledged"})
VERIFIED_ONLY = frozenset({"verified", "unchanged"})


def accepted_statuses(require_verified: bool = False, accept_unverified: bool = False) -> frozenset[str]:
    """The statuses that count as success: `--require-verified` / `--accept-unverified`."""
    if require_verified:
        return VERIFIED_ONLY
    return DEFAULT_ACCEPTED | {"sent"} if accept_unverified else DEFAULT_ACCEPTED


class Unverifiable(Exception):
    """Raised by `Flasher.device_digest` when the device cannot report a digest for a region.

    `status` ("booted" | "acknowledged" | "sent") is what the write itself established;
    `proves` says in one sentence what that is worth.
    """

    def __init__(self, status: str, proves: str | None = None) -> None:
        if status not in ("booted", "acknowledged", "sent"):
            raise ValueError(f"Unverifiable status {status!r}")
        self.status, self.proves = status, proves or PROVES[status]
        super().__init__(f"{status}: {self.proves}")


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
    proves: str = ""  # what the status proves (default: PROVES[status])

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.name,
            "address": self.address,
            "size": self.size,
            "status": self.status,
            "proves": self.proves or PROVES.get(self.status, ""),
            "seconds": round(self.seconds, 3),
            "bytes_sent": self.report.bytes_sent,
            "sectors_erased": self.report.sectors_erased,
            "sectors_skipped": self.report.sectors_skipped,
            "retries": self.report.retries,
            "error": self.error,
            "exit_code": self.exit_code,
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
        """0, or the exit code of the first failure (2 refused, 3 verify, 4 device, 5 protocol);
        3 for a region whose status is not accepted (e.g. "booted" under --require-verified)."""
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
