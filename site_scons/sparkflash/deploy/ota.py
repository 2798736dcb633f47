"""`sparkflash deploy --via ota`: ask our cloud server (`sparkflash cloud serve`) to deploy.

The devices are connected to the server, not to us, so this is a client of its loopback
admin API (bearer token from `--cloud-token FILE`, default the SPARKFLASH_CLOUD_TOKEN_FILE
environment variable): it checks the release and the downgrade ledger here, uploads each
region's blob by digest, posts the signed manifest, replays the server's per-device events
(progress bars or --json lines), and records the versions of the devices that succeeded.
The server checks the signature and its own downgrade record again.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
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
from sparkflash.errors import InputError, TransportError, VerifyError
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import Release

__all__ = ["deploy", "AdminClient"]


class AdminClient:
    """The few admin API calls we need, over http.client (one connection per request)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        u = urlsplit(url if "://" in url else f"http://{url}")
        if u.scheme != "http" or not u.hostname:
            raise InputError(f"--cloud {url!r}: expected http://HOST:PORT of `sparkflash cloud serve --admin`")
        self.url, self.host, self.port, self.timeout, self.token = url, u.hostname, u.port or 8683, timeout, token

    def _open(self, method: str, path: str, body: dict[str, Any] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": f"Bearer {self.token}"}
            if data:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
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
            msg = f"cloud admin API {method} {path}: {resp.status} {doc.get('error', '')}"
            code = doc.get("exit_code")
            if code == 3:
                raise VerifyError(msg)
            raise InputError(msg) if resp.status in (400, 401, 413, 415) else TransportError(msg)
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


def read_token(path: str | os.PathLike[str] | None) -> str:
    """The admin API token: --cloud-token FILE, else $SPARKFLASH_CLOUD_TOKEN_FILE."""
    p = path or os.environ.get("SPARKFLASH_CLOUD_TOKEN_FILE")
    if not p:
        raise InputError("the cloud's admin API needs its token: --cloud-token FILE (created beside the server key "
                         "by `sparkflash cloud serve`, e.g. server.der.admin-token)")
    try:
        return Path(p).read_text().strip()
    except OSError as e:
        raise InputError(f"--cloud-token {p}: {e.strerror}") from None


def deploy(args: argparse.Namespace, release: Release, regions: list[Region], on_event: EventFn,
           ledger: Ledger) -> list[DeployResult]:
    devices = [d.strip().lower() for d in args.device]
    if not devices:
        raise InputError("--via ota needs at least one --device ID (see `sparkflash cloud` GET /v1/devices)")
    m = release.manifest
    if not args.allow_downgrade:
        for d in devices:
            ledger.refuse_downgrade(d, m.name, m.version)
    blobs = {r.sha256: release.blob(r) for r in regions}  # digest-checked here too, before the server is asked
    client = AdminClient(args.cloud, read_token(getattr(args, "cloud_token", None)))
    for sha, data in blobs.items():
        client.call("PUT", f"/v1/blobs/{sha}", {"data": base64.b64encode(data).decode()})
    body: dict[str, Any] = {"manifest_json": release.raw.decode(), "devices": devices,
                            "regions": [r.name for r in regions], "allow_downgrade": bool(args.allow_downgrade)}
    if release.signature is not None:
        body["signature_json"] = release.signature.to_bytes().decode()
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
