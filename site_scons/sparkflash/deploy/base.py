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

__all__ = ["ProgressFn", "EventFn", "WriteReport", "Flasher", "RegionResult", "DeployResult"]

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)
EventFn = Callable[[dict[str, Any]], None]


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
        """(crc32, sha256 hex) of region.address..+size as stored on the device now."""
        ...

    def finish(self) -> None:
        """After all regions: e.g. DFU leave, serial firmware reset; idempotent."""
        ...


@dataclass
class RegionResult:
    name: str
    address: int
    size: int
    status: str  # "verified" | "unchanged" | "failed" | "skipped"
    seconds: float = 0.0
    report: WriteReport = field(default_factory=WriteReport)
    error: str | None = None
    exit_code: int = 0  # of the error that failed it (errors.py), so the CLI exits with the cause

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.name,
            "address": self.address,
            "size": self.size,
            "status": self.status,
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

    @property
    def ok(self) -> bool:
        return all(r.status in ("verified", "unchanged") for r in self.regions)

    @property
    def exit_code(self) -> int:
        """0, or the exit code of the first failure (3 = verify, 4 = device, 5 = protocol)."""
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
            "regions": [r.to_json() for r in self.regions],
        }
