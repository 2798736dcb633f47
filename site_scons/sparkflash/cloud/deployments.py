"""A deployment: one release to many devices at once, each through the shared deploy loop.

One thread per device runs `deploy_release` with a `CloudFlasher`; every event it emits is
tagged with the device and kept in order, so the admin API can replay and stream them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from sparkflash.boards import load_board
from sparkflash.cloud.flasher import CloudFlasher, OtaOptions
from sparkflash.deploy.base import DeployResult, RegionResult
from sparkflash.deploy.run import deploy_release, select_regions
from sparkflash.errors import SparkflashError
from sparkflash.manifest.release import Release

if TYPE_CHECKING:
    from sparkflash.cloud.server import CloudServer

__all__ = ["Deployment"]

_ids = itertools.count(1)
log = logging.getLogger("sparkflash.cloud")


class Deployment:
    def __init__(self, server: CloudServer, release: Release, devices: list[str],
                 regions: list[str] | None = None, opts: OtaOptions = OtaOptions()) -> None:
        self.id = f"d{next(_ids)}"
        self.server, self.release, self.devices, self.opts = server, release, devices, opts
        self.regions = select_regions(release.manifest.regions, regions)
        self.board = load_board(release.manifest.board)
        self.events: list[dict[str, Any]] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.started = time.time()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(d,), name=f"deploy-{d}", daemon=True) for d in devices]

    def start(self) -> Deployment:
        for t in self._threads:
            t.start()
        return self

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.devices)

    def _emit(self, device: str, ev: dict[str, Any]) -> None:
        with self._lock:
            self.events.append({**ev, "device": device, "deployment": self.id})

    def _run(self, device: str) -> None:
        flasher = CloudFlasher(self.server, self.board, device, self.opts)
        try:
            refused = flasher.preflight(self.regions)
            if refused:
                doc = self._refused(device, refused)
            else:
                res = deploy_release(flasher, self.release, regions=self.regions,
                                     on_event=lambda ev: self._emit(device, ev), allow_downgrade=True)
                doc = res.to_json()
                if res.ok:  # the server's own downgrade record (checked when a deployment is created)
                    m = self.release.manifest
                    self.server.ledger.record(device, m.name, m.version)
        except Exception as e:  # noqa: BLE001 - a result must exist for every device, or the deployment never ends
            if not isinstance(e, SparkflashError):
                log.exception("deployment %s, device %s", self.id, device)
            m = self.release.manifest
            doc = {**DeployResult(m.name, m.version, device, "ota", []).to_json(), "ok": False, "error": str(e),
                   "exit_code": getattr(e, "exit_code", 1)}
            self._emit(device, {"event": "deploy-done", "ok": False, "error": str(e)})
        with self._lock:
            self.results[device] = doc

    def _refused(self, device: str, refused: dict[str, str]) -> dict[str, Any]:
        """Nothing sent: each refused region fails with its reason (exit 2), the others are skipped."""
        m = self.release.manifest
        rr = [RegionResult(r.name, r.address, r.size, "failed" if r.name in refused else "skipped",
                           error=refused.get(r.name), exit_code=2 if r.name in refused else 0) for r in self.regions]
        res = DeployResult(m.name, m.version, device, "ota", rr)
        self._emit(device, {"event": "deploy-start", "release": m.name, "version": m.version, "device": device,
                            "via": "ota", "regions": len(rr)})
        for r in rr:
            self._emit(device, {"event": "region-done", **r.to_json()})
        self._emit(device, {"event": "deploy-done", "ok": False, "device": device})
        return res.to_json()

    def status(self) -> dict[str, Any]:
        with self._lock:
            results = [self.results[d] for d in self.devices if d in self.results]
            return {"id": self.id, "release": self.release.manifest.name, "version": self.release.manifest.version,
                    "devices": self.devices, "regions": [r.name for r in self.regions], "done": self.done,
                    "ok": self.done and all(r["ok"] for r in results), "results": results}

    def events_after(self, n: int) -> list[dict[str, Any]]:
        with self._lock:
            return self.events[n:]
