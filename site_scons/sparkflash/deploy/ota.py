"""`sparkflash deploy --via ota`: ask our cloud server (`sparkflash cloud serve`) to deploy.

The devices are connected to the server, not to us, so this is a client of its loopback
admin API: it checks the release and the downgrade ledger here, posts the deployment,
replays the server's per-device events (progress bars or --json lines), and records the
versions of the devices whose every region verified.
"""

from __future__ import annotations

import argparse
import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from sparkflash.deploy.base import (
    DeployResult,
    EventFn,
    RegionResult,
    WriteReport,
    accepted_statuses,
)
from sparkflash.deploy.run import Ledger
from sparkflash.errors import InputError, TransportError
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import Release

__all__ = ["deploy", "AdminClient"]


class AdminClient:
    """The few admin API calls we need, over http.client (one connection per request)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        u = urlsplit(url if "://" in url else f"http://{url}")
        if u.scheme != "http" or not u.hostname:
            raise InputError(f"--cloud {url!r}: expected http://HOST:PORT of `sparkflash cloud serve --admin`")
        self.url, self.host, self.port, self.timeout = url, u.hostname, u.port or 8683, timeout

    def _open(self, method: str, path: str, body: dict[str, Any] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            return conn.getresponse()
        except OSError as e:
            conn.close()
            raise TransportError(f"cloud admin API at {self.url}: {e}") from None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = self._open(method, path, body)
        try:
            doc: dict[str, Any] = json.loads(resp.read() or b"{}")
        finally:
            resp.close()
        if resp.status >= 400:
            exc = InputError if resp.status == 400 else TransportError
            raise exc(f"cloud admin API {method} {path}: {resp.status} {doc.get('error', '')}")
        return doc

    def events(self, deployment: str) -> Iterator[dict[str, Any]]:
        """The deployment's events as they happen, until it ends."""
        resp = self._open("GET", f"/v1/deployments/{deployment}/events")
        try:
            while line := resp.readline():
                if line.strip():  # blank lines are the server's keep-alives
                    yield json.loads(line)
        except (OSError, http.client.HTTPException) as e:
            raise TransportError(f"cloud admin API at {self.url}: event stream broke: {e}") from None
        finally:
            resp.close()


def _result(doc: dict[str, Any], regions: list[Region], accepted: frozenset[str]) -> DeployResult:
    rr = [RegionResult(r["region"], r["address"], r["size"], r["status"], r["seconds"],
                       WriteReport(r["bytes_sent"], r["sectors_erased"], r["sectors_skipped"], r["retries"]), r["error"],
                       int(r.get("exit_code") or 0), str(r.get("proves") or ""))
          for r in doc.get("regions", [])]
    if not rr:  # the device failed (or was refused) before any region started
        rr = [RegionResult(r.name, r.address, r.size, "failed", error=doc.get("error"),
                           exit_code=int(doc.get("exit_code") or 0)) for r in regions]
    return DeployResult(doc["release"], doc["version"], doc["device"], "ota", rr, accepted)


def deploy(args: argparse.Namespace, release: Release, regions: list[Region], on_event: EventFn,
           ledger: Ledger) -> list[DeployResult]:
    devices = [d.strip().lower() for d in args.device]
    if not devices:
        raise InputError("--via ota needs at least one --device ID (see `sparkflash cloud` GET /v1/devices)")
    m = release.manifest
    if not args.allow_downgrade:
        for d in devices:
            ledger.refuse_downgrade(d, m.name, m.version)
    for r in regions:
        release.blob(r)  # digest-checked here too, before the server is asked for anything
    client = AdminClient(args.cloud)
    body = {"manifest_json": release.raw.decode(), "blob_dir": str(release.blob_dir.resolve()),
            "devices": devices, "regions": [r.name for r in regions]}
    if args.timeout:
        body["connect_timeout"] = args.timeout
    dep = client.call("POST", "/v1/deployments", body)["id"]
    for ev in client.events(dep):
        ev.pop("deployment", None)
        on_event(ev)
    status = client.call("GET", f"/v1/deployments/{dep}")
    accepted = accepted_statuses(getattr(args, "require_verified", False), getattr(args, "accept_unverified", False))
    results = [_result(doc, regions, accepted) for doc in status["results"]]
    for res in results:
        if res.ok:
            ledger.record(res.device, m.name, m.version)
    return results
