"""Helpers for the several-instance and status page tests: the real services they start.

PostgreSQL comes from the session fixture in conftest.py (`postgres_server`); HAProxy and
the `cloud serve` instances from `sparkflash.fleet.local_services` (shared with
tools/fleet-demo and tools/bench fleet); Chromium is Debian's, run headless as an
unprivileged user and driven over the DevTools protocol (one websocket, JSON commands).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.cli import main
from sparkflash.fleet.local_services import own_dirs, stop_process, unprivileged

T = TypeVar("T")


def server_key(tmp: Path) -> tuple[Path, rsa.RSAPublicKey]:
    """`cloud keygen` into tmp: (private key path, public key)."""
    key = tmp / "server.der"
    assert main(["cloud", "keygen", "--out", str(key)]) == 0
    priv = serialization.load_der_private_key(key.read_bytes(), None)
    assert isinstance(priv, rsa.RSAPrivateKey)
    return key, priv.public_key()


class LoopThread:
    """An event loop in a thread: light devices run there while the test drives services."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Chromium:
    """Debian's chromium, headless, one page, driven over the DevTools protocol.

    Started as `nobody` when we are root (Chromium's sandbox then works as designed), with a
    profile in a temporary directory and DevTools on a loopback port chosen by Chromium itself."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="sparkflash-chromium-"))
        self.user = unprivileged("nobody")
        own_dirs([self.root], self.user)
        self.proc: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self._ws: Any = None

    def start(self, timeout: float = 60.0) -> Chromium:
        from websockets.sync.client import connect

        env = {"HOME": str(self.root), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self._err = open(self.root / "stderr.log", "wb")  # noqa: SIM115 (open for the browser's life)
        self.proc = subprocess.Popen(
            [self.binary, "--headless", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={self.root / 'profile'}", "--no-first-run", "--no-default-browser-check",
             "--disable-gpu", "--disable-extensions", "--disable-background-networking", "--disable-breakpad",
             "--disable-crash-reporter", "--window-size=1200,900",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self._err, env=env, user=self.user.get("user"),
            group=self.user.get("group"))
        active = self.root / "profile" / "DevToolsActivePort"
        end = time.monotonic() + timeout
        while not (active.exists() and len(active.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > end:
                why, code = (self.root / "stderr.log").read_text()[-2000:], self.proc.poll()
                self.stop()  # no browser or open log left behind for the next test
                raise RuntimeError(f"chromium did not start within {timeout:g} s (exit {code}): {why}")
            time.sleep(0.05)
        try:
            page = self._page(int(active.read_text().split()[0]))
            self._ws = self._stack.enter_context(connect(page, open_timeout=10, max_size=64 << 20))
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _page(port: int) -> str:
        from urllib.request import urlopen

        with urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        url = str(page["webSocketDebuggerUrl"])
        if not re.fullmatch(r"ws://127\.0\.0\.1:\d+/devtools/page/[A-Za-z0-9-]+", url):
            raise RuntimeError(f"unexpected DevTools address {url!r}")
        return url

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events that arrive meanwhile are dropped)."""
        n = next(self._ids)
        self._ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv(timeout=30))
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll a JS expression until it is truthy; its value."""
        end = time.monotonic() + timeout
        while True:
            try:  # a page still loading may not have the element yet: that is "not yet", not a failure
                v = self.evaluate(expression)
            except RuntimeError as e:
                v = e
            if v and not isinstance(v, RuntimeError):
                return v
            if time.monotonic() > end:
                raise TimeoutError(f"{expression} still {v!r} after {timeout:g} s")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def stop(self) -> None:
        self._stack.close()
        self._ws = None
        if self.proc is not None:
            stop_process(self.proc, 10)
            self.proc = None
            self._err.close()
        shutil.rmtree(self.root, ignore_errors=True)


def wait_until(what: str, cond: Callable[[], Any], timeout: float = 30.0) -> Any:
    """cond()'s first truthy value, polled every 50 ms; AssertionError naming `what` after `timeout` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
