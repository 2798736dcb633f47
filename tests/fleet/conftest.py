"""Fleet fixtures: every store test runs on SQLite and on a real PostgreSQL.

The PostgreSQL server is Debian's, started once per session as an unprivileged user (root
cannot run postgres) by `fleet.local_services.LocalPostgres`: initdb into a temporary
directory, a unix socket in that directory and no TCP listener, trust authentication for
that socket only, stopped at the end. Each test gets a schema of its own. Without the binaries the PostgreSQL half skips with the
reason; under CI (tools/setup installs `postgresql`) it fails instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_services import LoopThread

from sparkflash.deploy.ota import AdminClient
from sparkflash.fleet import Store, open_store
from sparkflash.fleet.local_services import LocalPostgres, pg_bindir


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}, although tools/setup installs it (apt package postgresql)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    bindir = pg_bindir()
    if bindir is None:
        _unavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'psycopg>=3.1')")
    assert bindir is not None
    srv = LocalPostgres(bindir)
    try:
        srv.start()
    except BaseException:
        srv.stop()
        raise
    yield srv
    srv.stop()


_COUNTER = [0]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'fleet.db'}"
    srv: LocalPostgres = request.getfixturevalue("postgres_server")
    _COUNTER[0] += 1
    return srv.create_db(f"t{os.getpid()}_{_COUNTER[0]}")


@pytest.fixture
def make_store(store_url: str) -> Iterator[Callable[..., Store]]:
    """make_store(**options) -> another connection to the test's database (closed at the end)."""
    opened: list[Store] = []

    def make(**kw: Any) -> Store:
        s = open_store(store_url, **kw)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    return make_store()


@pytest.fixture
def make_release() -> Callable[..., Any]:
    """make_release(store, [(region, address, bytes)]) -> an unsigned Release with its blobs in `store`."""
    from sparkflash.boards import load_board
    from sparkflash.manifest.model import Manifest, Region
    from sparkflash.manifest.release import Release, digests, store_blob

    def make(store: Path, parts: list[tuple[str, int, bytes]]) -> Release:
        board = load_board("spark-core")
        regions = []
        for name, address, data in parts:
            mem = next(m for m in board.memories if m.contains(address))
            sha, crc = digests(data)
            store_blob(store, data)
            kind = "firmware" if address == board.firmware_address else "data"
            regions.append(Region(name, mem.name, address, len(data), sha, crc, tuple(mem.sectors(address, len(data))), kind))
        m = Manifest("fleet-test", "1.0.0", board.name, tuple(regions))
        return Release(m, m.canonical(), None, store)

    return make


# -- the cloud server as a process, and an event loop for light devices ---------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """`sparkflash cloud serve` as a process, started again with the same arguments after a kill."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> Served:
        self.proc = subprocess.Popen([sys.executable, "-m", "sparkflash", "cloud", "serve", *self.args, "--json"],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.info = json.loads(self.proc.stdout.readline())
        return self

    def client(self) -> AdminClient:
        return AdminClient(self.info["admin"], Path(self.info["token_file"]).read_text().strip())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def served_process() -> Iterator[Callable[[list[str]], Served]]:
    """served_process(args) -> a started `cloud serve ARGS --json`; stopped at the end."""
    started: list[Served] = []

    def start(args: list[str]) -> Served:
        s = Served(args).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


# -- an in-process cloud server on a chosen database, with light devices ---------------------
@pytest.fixture(scope="session")
def cloud_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def light_keys() -> list[Any]:
    """Device keys the Core's fixed-offset reader takes (shared between light device ids)."""
    from sparkflash.protocols.core_keys import generate_device_key

    return [generate_device_key() for _ in range(2)]


class Fleet:
    """A running CloudServer (in a thread) and light devices on `loop`, registered in its store."""

    def __init__(self, server: Any, loop: LoopThread, keys: list[Any]) -> None:
        self.server, self.loop, self.keys = server, loop, keys
        self.devices: list[Any] = []
        self._tasks: list[Any] = []
        assert server.admin_addr is not None
        self.admin = "http://{}:{}".format(*server.admin_addr[:2])
        self.client = AdminClient(self.admin, server.token)

    def add(self, n: int, *, prefix: str, labels: tuple[str, ...] = (), agent: bool = True, dialect: str = "ccl",
            **opts: Any) -> list[Any]:
        """n light devices, connected: ccl with SaveBegin (files) and, by default, the agent (digests); a Device OS
        one ("os") is refused any file before a byte is sent."""
        from sparkflash.fleet.lightcore import LightDevice, LightOptions, device_ids, public_pem

        new = [LightDevice(d, self.keys[i % len(self.keys)], self.server.key.public_key(), ("127.0.0.1", self.server.port),
                           LightOptions(dialect=dialect, save_begin=True, agent=agent, reconnect_s=0.1, **opts))
               for i, d in enumerate(device_ids(n, prefix))]
        for d in new:
            self.server.registry.register(d.id, public_pem(d.key), {"save_begin": True})
            if labels:
                self.client.call("PUT", f"/v1/devices/{d.id}/labels", {"labels": list(labels)})

        async def start() -> None:
            for d in new:
                self._tasks.append(asyncio.ensure_future(d.run()))
            await asyncio.wait_for(asyncio.gather(*(d.connected.wait() for d in new)), 30)

        self.loop.run(start())
        self.devices += new
        return new

    def stop(self) -> None:
        for d in self.devices:
            d.stop()
        if self._tasks:
            async def wait() -> None:
                await asyncio.wait(self._tasks, timeout=10)

            self.loop.run(wait())


@pytest.fixture
def fleet_trust(keys: Path) -> Any:
    """The `fleet` server trusts the test's release key (`keys`), and only it."""
    from sparkflash.manifest.keys import TrustStore

    return TrustStore.from_paths([keys / "release.pub.pem"])


@pytest.fixture
def fleet(store_url: str, cloud_key: Any, light_keys: list[Any], loop_thread: LoopThread, tmp_path: Path,
          fleet_trust: Any) -> Iterator[Fleet]:
    """A cloud server on the test's database (SQLite or PostgreSQL) with room for light devices."""
    from sparkflash.cloud import CloudServer, DeviceRegistry, ServerThread
    from sparkflash.cloud.server import Limits

    trust = fleet_trust
    srv = CloudServer(cloud_key, DeviceRegistry(tmp_path / "devices"), host="127.0.0.1", port=0,
                      admin=("127.0.0.1", 0), insecure_unsigned=trust is None, trust=trust, database=store_url,
                      limits=Limits(per_peer=1024), store=tmp_path / "state", lease_s=5.0)
    with ServerThread(srv):
        f = Fleet(srv, loop_thread, light_keys)
        try:
            yield f
        finally:
            f.stop()


# -- releases on a real S3 server (moto, `sparkflash s3-local`) ------------------------------
BUCKET = "fleet-releases"




@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from sparkflash.publish.local_server import LocalS3Process

    with LocalS3Process(buckets=[BUCKET]) as server:
        yield server.endpoint


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    from sparkflash.manifest.keys import generate_key

    generate_key(tmp_path / "keys" / "release.pem")
    return tmp_path / "keys"


@pytest.fixture
def aim_s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1"),
                 ("AWS_CONFIG_FILE", "/nonexistent/aws-config"), ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/creds")):
        monkeypatch.setenv(k, v)


def publish(tmp_path: Path, keys: Path, prefix: str, version: str, data: bytes, channel: str | None = None) -> Path:
    from sparkflash.cli import main
    from sparkflash.manifest.build import build_release
    from sparkflash.manifest.keys import load_signer
    from sparkflash.manifest.release import sign_manifest

    """A signed release of one file at 0x80000, published to s3://BUCKET/PREFIX (and the channel)."""
    src = tmp_path / f"src-{version}"
    src.mkdir()
    (src / "web.bin").write_bytes(data)
    (src / "release.yaml").write_text(f'name: web\nversion: "{version}"\nboard: spark-core\nregions:\n'
                                      "  - name: web\n    memory: external\n    address: 0x80000\n"
                                      "    source: {file: web.bin}\n")
    res = build_release(src / "release.yaml", tmp_path / f"dist-{version}")
    sign_manifest(res.manifest_path, load_signer(keys / "release.pem"))
    argv = ["publish", str(tmp_path / f"dist-{version}"), f"s3://{BUCKET}/{prefix}", "--key", str(keys / "release.pem")]
    assert main(argv + (["--channel", channel] if channel else [])) == 0
    return tmp_path / f"dist-{version}"




@pytest.fixture
def publish_release(tmp_path: Path, keys: Path, aim_s3: None) -> Callable[..., str]:
    """publish_release(prefix, version, data, channel=None) -> the release's s3:// URL (signed by `keys`)."""
    def pub(prefix: str, version: str, data: bytes, channel: str | None = None) -> str:
        publish(tmp_path, keys, prefix, version, data, channel)
        return f"s3://{BUCKET}/{prefix}/releases/web/{version}"

    return pub


@pytest.fixture
def unused_port() -> int:
    return free_port()
