"""The admin API on loopback: a deliberately small HTTP/1.1 server (one request per connection).

    GET  /v1/devices                     registered/connected devices and refused attempts
    PUT  /v1/blobs/SHA256                {"data": base64}: into the server's store, digest checked
    POST /v1/deployments                 {"manifest_json": TEXT, "signature_json": TEXT} or {"manifest": PATH}
                                         (a release directory on this host), "devices": [ID...], optional
                                         "regions", "chunk_size", "fast", "connect_timeout", "allow_downgrade"
    GET  /v1/deployments/ID              status and per-device results
    GET  /v1/deployments/ID/events       JSON Lines, streamed until the deployment ends (?after=N)
    GET  /status.json                    the status page's data (cloud/status_page.py; the page, GET /status,
                                         is the one route served without the token: it holds no data)

Every request needs `Authorization: Bearer TOKEN` (the token file beside the server key);
a body must be `Content-Type: application/json` (a browser cannot send that cross-site
without a preflight we never answer). Releases must be signed by the server's trust store.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sparkflash.cloud import status_page
from sparkflash.cloud.deployments import Deployment
from sparkflash.cloud.flasher import OtaOptions
from sparkflash.cloud.registry import normalise_id
from sparkflash.cloud.releases import release_from_dir, release_from_post
from sparkflash.errors import InputError, SparkflashError
from sparkflash.manifest.release import Release

if TYPE_CHECKING:
    from sparkflash.cloud.server import CloudServer

__all__ = ["handle_http"]

MAX_BODY = 4 << 20  # a 2 MiB blob in base64
STATUS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
          405: "Method Not Allowed", 413: "Payload Too Large", 415: "Unsupported Media Type",
          500: "Internal Server Error"}
_BLOB = re.compile(r"[0-9a-f]{64}")


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _head(status: int, ctype: str, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {STATUS[status]}", f"Content-Type: {ctype}", "Connection: close"]
    if status == 401:
        lines.append('WWW-Authenticate: Bearer realm="sparkflash-cloud"')
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _json(writer: asyncio.StreamWriter, status: int, doc: dict[str, Any]) -> None:
    body = (json.dumps(doc, sort_keys=True) + "\n").encode()
    writer.write(_head(status, "application/json", len(body)) + body)


def _open(server: CloudServer, body: dict[str, Any]) -> Release:
    """Blocking (reads files): run in a worker thread."""
    if "manifest" in body:
        if not isinstance(body["manifest"], str):
            raise _HttpError(400, "'manifest' must be a path")
        return release_from_dir(Path(body["manifest"]), server.store, server.trust, server.insecure_unsigned)
    if "manifest_json" in body:
        return release_from_post(body["manifest_json"], body.get("signature_json"), server.store, server.trust,
                                 server.insecure_unsigned)
    raise _HttpError(400, "body needs 'manifest_json' (+ 'signature_json') or 'manifest' (a release directory)")


def _create(server: CloudServer, body: dict[str, Any]) -> dict[str, Any]:
    devices = body.get("devices")
    if not isinstance(devices, list) or not devices or len(devices) > 10_000:
        raise _HttpError(400, "'devices' must be a non-empty list of device ids")
    ids = [normalise_id(str(d)) for d in devices]
    release = _open(server, body)
    for r in release.manifest.regions:
        if not server.store.path(r.sha256).is_file():
            raise InputError(f"region {r.name!r}: blob {r.sha256[:16]}… is not in the server's store "
                             f"(PUT /v1/blobs/{r.sha256} first)")
    m = release.manifest
    if not body.get("allow_downgrade"):
        for d in ids:  # the server's own record of what it deployed, whoever asked
            server.ledger.refuse_downgrade(d, m.name, m.version)
    try:
        opts = OtaOptions(chunk_size=int(body.get("chunk_size", 512)), allow_fast=bool(body.get("fast", True)),
                          connect_s=min(600.0, float(body.get("connect_timeout", 60.0))))
    except (TypeError, ValueError) as e:
        raise _HttpError(400, f"bad option: {e}") from None
    regions = body.get("regions")
    if regions is not None and not (isinstance(regions, list) and all(isinstance(r, str) for r in regions)):
        raise _HttpError(400, "'regions' must be a list of region names")
    dep = Deployment(server, release, ids, regions, opts)
    server.deployments[dep.id] = dep.start()
    return {"id": dep.id, "url": f"/v1/deployments/{dep.id}"}


async def _stream(writer: asyncio.StreamWriter, dep: Deployment, after: int) -> None:
    writer.write(_head(200, "application/x-ndjson"))
    n, idle = after, 0
    while True:
        done = dep.done  # read before the events: the last ones are then sent too
        evs = dep.events_after(n)
        n += len(evs)
        idle = 0 if evs else idle + 1
        if evs or idle % 100 == 0:  # an empty line every 5 s keeps idle clients from timing out
            writer.write(b"".join((json.dumps(e, sort_keys=True) + "\n").encode() for e in evs) or b"\n")
            await writer.drain()
        if done and not evs:
            return
        await asyncio.sleep(0.05)


def _doc(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError as e:
        raise _HttpError(400, f"body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise _HttpError(400, "body must be a JSON object")
    return doc


async def _route(server: CloudServer, method: str, target: str, body: bytes, writer: asyncio.StreamWriter) -> None:
    url = urlsplit(target)
    parts = [p for p in url.path.split("/") if p]
    if parts == ["v1", "devices"] and method == "GET":
        return _json(writer, 200, server.device_list())
    if parts == ["status.json"] and method == "GET":  # the status page's data (cloud/status_page.py)
        return _json(writer, 200, await asyncio.to_thread(status_page.document, server))
    if len(parts) == 3 and parts[:2] == ["v1", "blobs"] and method == "PUT":
        if not _BLOB.fullmatch(parts[2]):
            raise _HttpError(400, "blob path must be /v1/blobs/<64 lowercase hex digits>")
        new = await asyncio.to_thread(server.store.put_b64, parts[2], _doc(body).get("data"))
        return _json(writer, 201 if new else 200, {"sha256": parts[2], "stored": new})
    if parts == ["v1", "deployments"] and method == "POST":
        return _json(writer, 201, await asyncio.to_thread(_create, server, _doc(body)))
    if len(parts) in (3, 4) and parts[:2] == ["v1", "deployments"] and method == "GET":
        dep = server.deployments.get(parts[2])
        if dep is None:
            raise _HttpError(404, f"no deployment {parts[2]!r}")
        if len(parts) == 3:
            return _json(writer, 200, dep.status())
        if parts[3] == "events":
            after = int(parse_qs(url.query).get("after", ["0"])[0])
            return await _stream(writer, dep, after)
    raise _HttpError(404 if method in ("GET", "POST") else 405, f"no route {method} {url.path}")


async def handle_http(server: CloudServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if method == "GET" and status_page.is_public(urlsplit(target).path):  # the page itself: no data, no token
            return status_page.write_public(writer, urlsplit(target).path)
        auth = headers.get("authorization", "")
        if not (auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), server.token.encode())):
            raise _HttpError(401, "missing or wrong bearer token (the admin token file beside the server key)")
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY or length < 0:
            raise _HttpError(413, f"body over {MAX_BODY} bytes")
        if method in ("POST", "PUT") and headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise _HttpError(415, "the admin API takes only Content-Type: application/json")
        body = await asyncio.wait_for(reader.readexactly(length), 30) if length else b""
        await _route(server, method, target, body, writer)
    except _HttpError as e:
        _json(writer, e.status, {"error": str(e)})
    except SparkflashError as e:
        _json(writer, 400, {"error": str(e), "exit_code": e.exit_code})
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as e:
        _json(writer, 400, {"error": f"bad request: {e}"})
    except ConnectionError:
        pass
    finally:
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()
