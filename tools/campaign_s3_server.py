"""The fault campaign's S3 server: `sparkflash s3-local` that dies at its Nth request.

A server killed at a random moment mostly dies between S3 requests (while a publish or a
deploy starts Python, or flashes): nothing is in flight and the "fault" proves nothing. So,
as the virtual Core drops its link at the Nth byte received, this server counts the S3
requests of a publish + deploy and dies (os._exit, as SIGKILL would: no reply, no cleanup)
at request N, either before replying or in the middle of the body it is receiving (PUT)
or sending (GET). The campaign draws N from a calibration run's request count.

Every request is logged to --report (emptied at the start) as one JSON line; the stop adds
{"fired": ...}, fsynced before the exit, so the campaign knows the fault really hit a
request in flight. The mirror's read-back of an object being written (the server asking
itself) is not a client request and is not counted.

    campaign_s3_server.py --data DIR --bucket B --report FILE [--stop-at N [--mid-body]]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "site_scons"))

from sparkflash.publish.local_server import LocalS3  # noqa: E402

StartResponse = Callable[..., Any]


class StopAt:
    """WSGI middleware: log each request; at request `stop_at`, die mid-request."""

    def __init__(self, app: Any, report: Path, stop_at: int | None, mid_body: bool) -> None:
        self.app, self.stop_at, self.mid_body = app, stop_at, mid_body
        self.report = open(report, "w", buffering=1)  # noqa: SIM115 - per start; lives as long as the server
        self.count = 0
        self.writing: Counter[str] = Counter()  # paths a write is being handled for, by the wrapped app
        self.counting = False  # off while LocalS3 restores the mirrored objects
        self.lock = threading.Lock()

    def _log(self, rec: dict[str, Any]) -> None:
        self.report.write(json.dumps(rec) + "\n")
        self.report.flush()
        os.fsync(self.report.fileno())

    def _die(self, n: int, environ: dict[str, Any], phase: str) -> None:
        with self.lock:
            self._log({"fired": n, "method": environ["REQUEST_METHOD"], "path": environ.get("PATH_INFO", ""),
                       "phase": phase})
            os._exit(137)

    def _inner(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The wrapped app; while it handles a write, the mirror's own read-back of that key (a request
        of the server to itself) comes in on another thread and must not count."""
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] not in ("PUT", "POST", "DELETE"):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        with self.lock:
            self.writing[path] += 1
        try:
            return list(self.app(environ, start_response))
        finally:
            with self.lock:
                self.writing[path] -= 1

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        with self.lock:
            internal = not self.counting or (environ["REQUEST_METHOD"] == "GET" and self.writing[path] > 0)
            if not internal:
                self.count += 1
                n = self.count
                self._log({"n": n, "method": environ["REQUEST_METHOD"], "path": path})
        if internal or n != self.stop_at:
            return self._inner(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if self.mid_body and length > 1:  # a PUT half received
            environ["wsgi.input"].read(length // 2)
            self._die(n, environ, f"request body, {length // 2} of {length} bytes received")
        if not self.mid_body:
            self._die(n, environ, "before the reply")
        held: list[tuple[Any, ...]] = []

        def hold(*args: Any) -> Callable[[bytes], None]:
            held.append(args)
            return lambda _b: None

        body = b"".join(self._inner(environ, hold))
        if len(body) < 2 or not held:  # nothing to cut in half (HEAD, an empty reply): the request was handled
            self._die(n, environ, "handled, before the reply")
        start_response(*held[0])
        return self._half(n, environ, body)

    def _half(self, n: int, environ: dict[str, Any], body: bytes) -> Iterator[bytes]:
        yield body[: len(body) // 2]  # werkzeug writes and flushes each chunk: the client has half
        self._die(n, environ, f"reply body, {len(body) // 2} of {len(body)} bytes sent")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="campaign_s3_server.py", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--bucket", action="append", default=[])
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--stop-at", type=int, help="die at this request (1 = the first after the start)")
    ap.add_argument("--mid-body", action="store_true", help="die halfway through the request's or the reply's body")
    a = ap.parse_args(argv)
    mw: list[StopAt] = []

    def wrap(app: Any) -> Any:
        mw.append(StopAt(app, a.report, a.stop_at, a.mid_body))
        return mw[0]

    server = LocalS3(data=a.data, wrap=wrap).start(a.bucket)
    mw[0].counting = True
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(json.dumps({"endpoint": server.endpoint}), flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
