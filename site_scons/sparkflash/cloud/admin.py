"""The admin API on loopback: a deliberately small HTTP/1.1 server (one request per connection).

    GET  /v1/devices                     registered/connected devices and refused attempts
    POST /v1/deployments                 {"manifest": PATH} or {"manifest_json": TEXT, "blob_dir": DIR},
                                         "devices": [ID...], optional "regions", "chunk_size", "fast"
    GET  /v1/deployments/ID              status and per-device results
    GET  /v1/deployments/ID/events       JSON Lines, streamed until the deployment ends (?after=N)
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sparkflash.cloud.deployments import Deployment
from sparkflash.cloud.flasher import OtaOptions
from sparkflash.cloud.registry import normalise_id
from sparkflash.errors import SparkflashError
from sparkflash.manifest.model import Manifest
from sparkflash.manifest.release import Release, open_release

if TYPE_CHECKING:
    from sparkflash.cloud.server import CloudServer

__all__ = ["handle_http"]

MAX_BODY = 1 << 20
STATUS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
          500: "Internal Server Error"}


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _head(status: int, ctype: str, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {STATUS[status]}", f"Content-Type: {ctype}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _json(writer: asyncio.StreamWriter, status: int, doc: dict[str, Any]) -> None:
    body = (json.dumps(doc, sort_keys=True) + "\n").encode()
    writer.write(_head(status, "application/json", len(body)) + body)


def _open(server: CloudServer, body: dict[str, Any]) -> Release:
    if "manifest" in body:
        p = Path(body["manifest"])
        return open_release(p / "manifest.json" if p.is_dir() else p, server.trust, require_signature=server.trust is not None)
    if "manifest_json" in body and "blob_dir" in body:
        raw = body["manifest_json"].encode()
        return Release(Manifest.from_bytes(raw, "POST /v1/deployments"), raw, None, Path(body["blob_dir"]))
    raise _HttpError(400, "body needs 'manifest' (path) or 'manifest_json' + 'blob_dir'")


def _create(server: CloudServer, body: dict[str, Any]) -> dict[str, Any]:
    devices = body.get("devices")
    if not isinstance(devices, list) or not devices:
        raise _HttpError(400, "'devices' must be a non-empty list of device ids")
    release = _open(server, body)
    opts = OtaOptions(chunk_size=int(body.get("chunk_size", 512)), allow_fast=bool(body.get("fast", True)),
                      connect_s=float(body.get("connect_timeout", 60.0)))
    dep = Deployment(server, release, [normalise_id(d) for d in devices], body.get("regions"), opts)
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


async def _route(server: CloudServer, method: str, target: str, body: bytes, writer: asyncio.StreamWriter) -> None:
    url = urlsplit(target)
    parts = [p for p in url.path.split("/") if p]
    if parts == ["v1", "devices"] and method == "GET":
        return _json(writer, 200, server.device_list())
    if parts == ["v1", "deployments"] and method == "POST":
        try:
            doc = json.loads(body or b"{}")
        except ValueError as e:
            raise _HttpError(400, f"body is not JSON: {e}") from None
        return _json(writer, 201, _create(server, doc))
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
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY:
            raise _HttpError(400, "body too large")
        body = await reader.readexactly(length) if length else b""
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
