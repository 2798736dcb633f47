"""The status page for people: static HTML + a little JS from the package, its data from
`GET /status.json` (the fleet store, read-only, behind the admin token).

The page itself holds no data, so `GET /status` (and its script and style) is served without
the token; the script takes the token from the URL's fragment (`/status#token=...`: a fragment
never reaches the server, its logs or a Referer), keeps it in the tab's sessionStorage, removes
it from the address bar, and sends it as `Authorization: Bearer` on every fetch. The JSON
stays behind the token like every other admin route. Strict headers: a Content-Security-Policy
allowing only this origin's script, style and fetches, no framing, no referrer, no caching.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparkflash.cloud.server import CloudServer

__all__ = ["PUBLIC", "document", "is_public", "write_public"]

PUBLIC = {"/status": ("status.html", "text/html; charset=utf-8"),
          "/status.js": ("status.js", "text/javascript; charset=utf-8"),
          "/status.css": ("status.css", "text/css; charset=utf-8")}
HEADERS = ("Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
           "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
           "X-Content-Type-Options: nosniff", "X-Frame-Options: DENY", "Referrer-Policy: no-referrer",
           "Cache-Control: no-store")
_cache: dict[str, bytes] = {}


def is_public(path: str) -> bool:
    return path in PUBLIC


def _static(name: str) -> bytes:
    if name not in _cache:
        _cache[name] = resources.files("sparkflash.cloud").joinpath("static", name).read_bytes()
    return _cache[name]


def write_public(writer: asyncio.StreamWriter, path: str) -> None:
    """One of the page's own files, with the headers above."""
    name, ctype = PUBLIC[path]
    body = _static(name)
    head = ["HTTP/1.1 200 OK", f"Content-Type: {ctype}", f"Content-Length: {len(body)}", "Connection: close", *HEADERS]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def document(server: CloudServer) -> dict[str, Any]:
    """The status JSON (blocking: the server's database thread)."""
    from sparkflash.fleet.status import status_doc

    doc = status_doc(server.db, lease_s=server.lease_s)
    doc["served_by"] = server.instance
    return doc
