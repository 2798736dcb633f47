"""Several devices at once: one thread per device, events tagged with the device, one result list.

Each device's deploy is the ordinary sequential loop (`deploy.run`); only devices run side
by side. A device that fails before its loop starts (port missing, USB gone) becomes a
failed DeployResult with the error and its exit code; the others carry on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sparkflash.deploy.base import DeployResult, EventFn, RegionResult
from sparkflash.errors import SparkflashError
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import Release

__all__ = ["Job", "run_parallel", "tagged"]

Job = tuple[str, Callable[[EventFn], list[DeployResult]]]  # (target label, run(on_event) -> results)


def tagged(on_event: EventFn, target: str, lock: threading.Lock | None = None) -> EventFn:
    """Every event gets `target` (what the user named: port, virtual:DIR, usb:1-2) and a `device`."""
    def emit(ev: dict[str, Any]) -> None:
        out = {**ev, "target": target}
        out.setdefault("device", target)
        if lock is None:
            on_event(out)
        else:
            with lock:
                on_event(out)

    return emit


def _failed(release: Release, regions: list[Region], target: str, via: str, err: SparkflashError) -> DeployResult:
    m = release.manifest
    rr = [RegionResult(r.name, r.address, r.size, "failed", error=str(err), exit_code=err.exit_code) for r in regions]
    return DeployResult(m.name, m.version, target, via, rr)


def run_parallel(jobs: list[Job], on_event: EventFn, release: Release, regions: list[Region],
                 via: str) -> list[DeployResult]:
    """Run every job at once; results in job order."""
    lock = threading.Lock()
    slots: list[list[DeployResult]] = [[] for _ in jobs]
    crashes: list[BaseException] = []

    def work(i: int, target: str, fn: Callable[[EventFn], list[DeployResult]]) -> None:
        emit = tagged(on_event, target, lock)
        try:
            slots[i] = fn(emit)
        except SparkflashError as e:
            slots[i] = [_failed(release, regions, target, via, e)]
            emit({"event": "deploy-done", "ok": False, "error": str(e)})
        except BaseException as e:  # noqa: BLE001 - a bug: re-raised in the caller's thread below
            crashes.append(e)

    threads = [threading.Thread(target=work, args=(i, t, fn), name=f"deploy-{t}", daemon=True)
               for i, (t, fn) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if crashes:
        raise crashes[0]
    return [r for slot in slots for r in slot]
