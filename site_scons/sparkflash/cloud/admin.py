"""The admin API on loopback: a deliberately small HTTP/1.1 server (one request per connection).

    GET  /v1/devices                     registered devices (the store), their connections, refused attempts
    PUT  /v1/devices/ID/labels           {"labels": [...]}: the device's groups, for rollout targets
    PUT  /v1/blobs/SHA256                {"data": base64}: into the server's store, digest checked
    POST /v1/deployments                 {"release": REF} (s3://... or channel:...#name), or
                                         {"manifest_json": TEXT, "signature_json": TEXT}, or {"manifest": PATH}
                                         (a release directory on this host); "devices": [ID...], optional
                                         "regions", "chunk_size", "fast", "connect_timeout", "allow_downgrade"
    GET  /v1/deployments/ID              status and per-device results
    GET  /v1/deployments/ID/events       JSON Lines, streamed until the deployment ends (?after=N)
    POST /v1/rollouts                    {"release": REF, "id", "target": {"devices", "labels", "percent"},
                                         "phases": [{"percent", "threshold"}...], options as above}
    GET  /v1/rollouts                    every rollout (state, phase, reason)
    GET  /v1/rollouts/ID                 the rollout, each phase (threshold, counts, state), each device
    POST /v1/rollouts/ID/pause|resume|abort   resume takes {"retry_failed": bool}
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

from sparkflash.cloud import deployments, status_page
from sparkflash.cloud.registry import normalise_id
from sparkflash.cloud.releases import release_from_dir, release_from_post
from sparkflash.errors import SparkflashError
from sparkflash.fleet import ids as fleet_ids
from sparkflash.fleet.records import Phase, Target
from sparkflash.fleet.rollouts import DEFAULT_PHASES, Rollouts
from sparkflash.manifest.release import Release

if TYPE_CHECKING:
    from sparkflash.cloud.server import CloudServer

__all__ = ["handle_http"]

MAX_BODY = 4 << 20  # a 2 MiB blob in base64
STATUS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
          405: "Method Not Allowed", 413: "Payload Too Large", 415: "Unsupported Media Type",
          500: "Internal Server Error"}
_BLOB = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # a deployment's or rollout's id (fleet.ids.rollout_id)


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


def _open(server: CloudServer, body: dict[str, Any]) -> tuple[str, Release]:
    """(the release's reference, the verified release). Blocking (reads files, fetches S3): a worker thread."""
    if "release" in body:
        return server.releases.resolve(fleet_ids.release_ref(body["release"]))
    if "manifest" in body:
        if not isinstance(body["manifest"], str):
            raise _HttpError(400, "'manifest' must be a path")
        rel = release_from_dir(Path(body["manifest"]), server.store, server.trust, server.insecure_unsigned)
    elif "manifest_json" in body:
        rel = release_from_post(body["manifest_json"], body.get("signature_json"), server.store, server.trust,
                                server.insecure_unsigned)
    else:
        raise _HttpError(400, "body needs 'release' (s3://... or channel:...), 'manifest_json' (+ 'signature_json') "
                              "or 'manifest' (a release directory)")
    return server.releases.save(rel), rel


def _device_ids(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > 10_000 or not all(isinstance(d, str) for d in value):
        raise _HttpError(400, "'devices' must be a list of device ids")
    return list(dict.fromkeys(normalise_id(d) for d in value))


async def _create_deployment(server: CloudServer, body: dict[str, Any]) -> dict[str, Any]:
    devices = _device_ids(body.get("devices"))
    if not devices:
        raise _HttpError(400, "'devices' must be a non-empty list of device ids")
    opts = deployments.options_from(body)
    ref, rel = await asyncio.to_thread(_open, server, body)
    rid = await server.db_call(deployments.create, server, rel, ref, devices, None, (Phase(100.0, 0.0),), opts)
    server.work.wake()
    return {"id": rid, "url": f"/v1/deployments/{rid}"}


def _phases(value: object) -> tuple[Phase, ...]:
    if value is None:
        return DEFAULT_PHASES
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        raise _HttpError(400, "'phases' must be a list of {\"percent\", \"threshold\"}")
    try:
        return tuple(Phase(float(p["percent"]), float(p.get("threshold", 1.0))) for p in value)
    except (KeyError, TypeError, ValueError) as e:
        raise _HttpError(400, f"bad phase: {e}") from None


def _target(value: object) -> Target:
    if value is None:
        return Target()
    if not isinstance(value, dict) or set(value) - {"devices", "labels", "percent"}:
        raise _HttpError(400, "'target' must be {\"devices\": [...], \"labels\": [...], \"percent\": N}")
    labels = value.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _HttpError(400, "'target.labels' must be a list of labels")
    try:
        pct = float(value.get("percent", 100.0))
    except (TypeError, ValueError):
        raise _HttpError(400, "'target.percent' must be a number") from None
    return Target(tuple(_device_ids(value.get("devices", []))), tuple(fleet_ids.label(x) for x in labels), pct)


async def _create_rollout(server: CloudServer, body: dict[str, Any]) -> dict[str, Any]:
    if "release" not in body:
        raise _HttpError(400, "a rollout needs 'release': s3://BUCKET/PREFIX/releases/NAME/VERSION or "
                              "channel:s3://BUCKET/PREFIX/NAME#CHANNEL")
    rid = fleet_ids.rollout_id(body["id"]) if "id" in body else None
    target, phases, opts = _target(body.get("target")), _phases(body.get("phases")), deployments.options_from(body)
    ref, rel = await asyncio.to_thread(_open, server, {"release": body["release"]})
    rid = await server.db_call(deployments.create, server, rel, ref, list(target.devices), target, phases, opts, rid)
    server.work.wake()
    return await server.db_call(Rollouts(server.db).status, rid)


async def _rollout_command(server: CloudServer, rid: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
    ro = Rollouts(server.db)
    fleet_ids.rollout_id(rid)
    if command == "pause":
        await server.db_call(ro.pause, rid)
    elif command == "resume":
        await server.db_call(ro.resume, rid, retry_failed=bool(body.get("retry_failed", False)))
        server.work.wake()
    elif command == "abort":
        await server.db_call(ro.abort, rid)
    else:
        raise _HttpError(404, f"no rollout command {command!r} (pause, resume, abort)")
    return await server.db_call(ro.status, rid)


def _rollout_list(server: CloudServer) -> dict[str, Any]:
    return {"rollouts": [{"id": r.id, "release": r.release_ref, "state": r.state, "phase": r.phase + 1,
                          "phases": len(r.phases), "reason": r.reason, "created_at": r.created_at}
                         for r in server.db.rollouts()]}


def _set_labels(server: CloudServer, device: str, body: dict[str, Any]) -> dict[str, Any]:
    labels = body.get("labels")
    if not isinstance(labels, list) or len(labels) > 64 or not all(isinstance(x, str) for x in labels):
        raise _HttpError(400, "'labels' must be a list of labels")
    dev = server.db.device(device)
    if dev is None and server.import_device(device):
        dev = server.db.device(device)
    if dev is None:
        raise _HttpError(404, f"device {device} is not registered")
    d = server.db.put_device(dev.id, dev.public_key, labels=labels, capabilities=dev.capabilities)
    return {"id": d.id, "labels": list(d.labels)}


async def _stream(server: CloudServer, writer: asyncio.StreamWriter, rid: str, after: int) -> None:
    live = deployments.live(server, rid)
    writer.write(_head(200, "application/x-ndjson"))
    n, idle, done = after, 0, False
    while True:
        if idle % 10 == 0:  # the store says when it ended (read before the events: the last ones are then sent too)
            st = await server.db_call(server.db.rollout, rid)
            done = st is None or st.state in ("done", "aborted")
        evs = live.after(n)
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
        return _json(writer, 200, await server.db_call(server.device_list))
    if len(parts) == 4 and parts[:2] == ["v1", "devices"] and parts[3] == "labels" and method == "PUT":
        return _json(writer, 200, await server.db_call(_set_labels, server, normalise_id(parts[2]), _doc(body)))
    if parts == ["status.json"] and method == "GET":  # the status page's data (cloud/status_page.py)
        return _json(writer, 200, await server.db_call(status_page.document, server))
    if len(parts) == 3 and parts[:2] == ["v1", "blobs"] and method == "PUT":
        if not _BLOB.fullmatch(parts[2]):
            raise _HttpError(400, "blob path must be /v1/blobs/<64 lowercase hex digits>")
        new = await asyncio.to_thread(server.store.put_b64, parts[2], _doc(body).get("data"))
        return _json(writer, 201 if new else 200, {"sha256": parts[2], "stored": new})
    if parts == ["v1", "deployments"] and method == "POST":
        return _json(writer, 201, await _create_deployment(server, _doc(body)))
    if len(parts) in (3, 4) and parts[:2] == ["v1", "deployments"] and method == "GET":
        if not _ID.fullmatch(parts[2]):
            raise _HttpError(404, f"no deployment {parts[2][:80]!r}")
        if len(parts) == 3:
            doc = await server.db_call(deployments.status, server, parts[2])
            if doc is None:
                raise _HttpError(404, f"no deployment {parts[2]!r}")
            return _json(writer, 200, doc)
        if parts[3] == "events":
            if await server.db_call(server.db.rollout, parts[2]) is None:
                raise _HttpError(404, f"no deployment {parts[2]!r}")
            after = int(parse_qs(url.query).get("after", ["0"])[0])
            return await _stream(server, writer, parts[2], after)
    if parts == ["v1", "rollouts"] and method == "POST":
        return _json(writer, 201, await _create_rollout(server, _doc(body)))
    if parts == ["v1", "rollouts"] and method == "GET":
        return _json(writer, 200, await server.db_call(_rollout_list, server))
    if len(parts) == 3 and parts[:2] == ["v1", "rollouts"] and method == "GET":
        if not _ID.fullmatch(parts[2]):
            raise _HttpError(404, f"no rollout {parts[2][:80]!r}")
        return _json(writer, 200, await server.db_call(Rollouts(server.db).status, parts[2]))
    if len(parts) == 4 and parts[:2] == ["v1", "rollouts"] and method == "POST":
        if not _ID.fullmatch(parts[2]):
            raise _HttpError(404, f"no rollout {parts[2][:80]!r}")
        return _json(writer, 200, await _rollout_command(server, parts[2], parts[3], _doc(body)))
    raise _HttpError(404 if method in ("GET", "POST", "PUT") else 405, f"no route {method} {url.path}")


async def handle_http(server: CloudServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    stopping = False
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
    except asyncio.CancelledError:  # the server stops (an event stream still open): end quietly, unflushed
        stopping = True             # (Python 3.11's start_server callback logs a cancelled handler as a traceback)
    finally:
        try:
            if not stopping:
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()
