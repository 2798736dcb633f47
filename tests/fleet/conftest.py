"""Fleet fixtures: every store test runs on SQLite and on a real PostgreSQL.

The PostgreSQL server is Debian's, started once per session as an unprivileged user (root
cannot run postgres) by `fleet.local_services.LocalPostgres`: initdb into a temporary
directory, a unix socket in that directory and no TCP listener, trust authentication for
that socket only, stopped at the end. Each test gets a schema of its own. Without the binaries the PostgreSQL half skips with the
reason; under CI (tools/setup installs `postgresql`) it fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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
