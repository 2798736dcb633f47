"""A real S3 endpoint on loopback (moto's server mode) for the demo, the tests and offline use.

Not a mocked client: boto3 talks HTTP to it exactly as to AWS. moto keeps objects in
memory; with `data` every successful object write is mirrored to a directory BEFORE the
client gets its 200 and restored at the next start, so a server killed mid-publish comes
back with exactly what it had acknowledged. That is what lets a test (or a user) check
that an interrupted publish left no release manifest and that a rerun completes.

`LocalS3` runs the server in this process (`sparkflash s3-local`); `LocalS3Process` runs
`sparkflash s3-local` as a child process that can be stopped, or killed, from outside.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from sparkflash.errors import InputError, PublishError
from sparkflash.manifest.release import atomic_write
from sparkflash.publish.store import ClientOptions, make_client

__all__ = ["LocalS3", "LocalS3Process"]

StartResponse = Callable[..., Any]
_OBJECT_QUERIES = {"uploadId"}  # POST ?uploadId=… completes a multipart upload


def _moto() -> tuple[Any, Any, Any]:
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    except ImportError as e:
        raise InputError(f"the local S3 server needs moto's server mode ({e}): install the extra with "
                         "`pip install 'sparkflash[s3-local]'` (in this checkout: tools/setup)") from e
    return DomainDispatcherApplication, MotoRequestHandler, create_backend_app


def _check_loopback(host: str) -> None:
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise InputError(f"--host {host}: the local S3 server accepts any credentials, so it only listens on loopback")


class _Mirror:
    """WSGI middleware: after a successful object/bucket write, copy the new state to disk."""

    def __init__(self, app: Any, root: Path) -> None:
        self.app = app
        self.root = root
        self.client: Any = None  # set once the server is up
        self.enabled = False

    def _file(self, bucket: str, key: str) -> Path:
        return self.root / bucket / quote(key, safe="")

    def _sync(self, method: str, bucket: str, key: str, query: dict[str, list[str]]) -> None:
        if not key:
            if method == "PUT" and not query:
                (self.root / bucket).mkdir(parents=True, exist_ok=True)
            elif method == "DELETE" and not query:
                shutil.rmtree(self.root / bucket, ignore_errors=True)
            return
        if method == "DELETE" and not query:
            self._file(bucket, key).unlink(missing_ok=True)
        elif (method == "PUT" and not query) or (method == "POST" and set(query) == _OBJECT_QUERIES):
            from botocore.exceptions import ClientError

            try:
                data = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError:
                return
            atomic_write(self._file(bucket, key), data)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if not self.enabled or method not in ("PUT", "POST", "DELETE"):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        held: list[tuple[Any, ...]] = []

        def hold(*args: Any) -> Callable[[bytes], None]:
            held.append(args)
            return lambda _b: None

        body = list(self.app(environ, hold))  # the response is not sent until the mirror is written
        status = str(held[0][0]) if held else "500"
        if status.startswith("2"):
            bucket, _, key = unquote(environ.get("PATH_INFO", "")).lstrip("/").partition("/")
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            if bucket:
                self._sync(method, bucket, key, query)
        start_response(*held[0])
        return body


class LocalS3:
    """moto's S3 server in a thread of this process, on host:port (port 0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, data: Path | None = None, verbose: bool = False,
                 wrap: Callable[[Any], Any] | None = None) -> None:
        """`wrap`: outermost WSGI middleware (the fault campaign's server stop at the Nth request)."""
        _check_loopback(host)
        self.host, self.port, self.data, self.verbose, self.wrap = host, port, data, verbose, wrap
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._mirror: _Mirror | None = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise PublishError("local S3 server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, buckets: Iterable[str] = ()) -> LocalS3:
        import logging

        dispatcher, handler, backend_app = _moto()  # first: it names the extra if moto/werkzeug is missing
        from werkzeug.serving import make_server

        if not self.verbose:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app: Any = dispatcher(backend_app)
        if self.data is not None:
            self.data.mkdir(parents=True, exist_ok=True)
            app = self._mirror = _Mirror(app, self.data)
        if self.wrap is not None:
            app = self.wrap(app)
        try:
            self._server = make_server(self.host, self.port, app, threaded=True, request_handler=handler)
        except OSError as e:
            raise PublishError(f"cannot listen on {self.host}:{self.port}: {e.strerror}; pick another --port") from e
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-local", daemon=True)
        self._thread.start()
        client, _ = make_client(ClientOptions(endpoint_url=self.endpoint))
        if self._mirror is not None:
            self._restore(client)
            self._mirror.client = client
            self._mirror.enabled = True
        for b in buckets:
            if b not in {x["Name"] for x in client.list_buckets().get("Buckets", [])}:
                client.create_bucket(Bucket=b)  # mirrored: the bucket outlives a restart
        return self

    def _restore(self, client: Any) -> None:
        """Load every mirrored bucket and object back into moto's memory."""
        assert self.data is not None
        for bdir in sorted(p for p in self.data.iterdir() if p.is_dir()):
            client.create_bucket(Bucket=bdir.name)
            for f in sorted(bdir.iterdir()):
                if f.is_file() and not f.name.startswith("."):
                    client.put_object(Bucket=bdir.name, Key=unquote(f.name), Body=f.read_bytes())

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None


class LocalS3Process:
    """`sparkflash s3-local` as a child process: the tests' server, which they may kill mid-request."""

    def __init__(self, data: Path | None = None, buckets: Iterable[str] = (), port: int = 0,
                 env: Mapping[str, str] | None = None) -> None:
        self.data, self.buckets, self.port = data, list(buckets), port
        self.env = dict(env or {})  # e.g. moto's S3_UPLOAD_PART_MIN_SIZE
        self.proc: subprocess.Popen[str] | None = None
        self._log: Any = None
        self.endpoint = ""

    def start(self, timeout: float = 30.0) -> LocalS3Process:
        cmd = [sys.executable, "-m", "sparkflash", "s3-local", "--port", str(self.port), "--json"]
        if self.data is not None:
            cmd += ["--data", str(self.data)]
        for b in self.buckets:
            cmd += ["--bucket", b]
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: nobody has to drain it
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"})
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            line = self.proc.stdout.readline() if self.proc.stdout else ""
        finally:
            timer.cancel()
        if not line:
            self.proc.wait()
            self._log.seek(0)
            err = self._log.read().decode(errors="replace")
            self._close()
            raise PublishError(f"`{' '.join(cmd)}` did not start (exit {self.proc.returncode}): {err.strip()[-500:]}")
        self.endpoint = str(json.loads(line)["endpoint"])
        return self

    def stop(self) -> None:
        """Graceful stop (SIGTERM)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()

    def kill(self) -> None:
        """Abrupt stop (SIGKILL), as a crash or a pulled cable would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalS3Process:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
