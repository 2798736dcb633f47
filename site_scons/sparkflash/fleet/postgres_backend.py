"""PostgreSQL through psycopg 3, for several server instances on one database.

Claims add `FOR UPDATE OF rd SKIP LOCKED`: two instances claiming at once each get rows the
other does not hold, with no waiting and no double claim. Wake-ups are LISTEN/NOTIFY on
one channel; the listening connection is separate so a wait never blocks a query.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sparkflash.fleet.backend import Backend, StoreError

__all__ = ["CHANNEL", "PostgresBackend"]

CHANNEL = "sparkflash_fleet"
MIGRATION_LOCK = 0x5346_1701  # pg_advisory_xact_lock key: one migrating instance at a time
_PLACEHOLDER = re.compile(r"\?")


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


class PostgresBackend(Backend):
    dialect = "postgresql"
    skip_locked = " FOR UPDATE OF rd SKIP LOCKED"
    lock_row = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise StoreError("a postgresql:// database needs psycopg 3 (pip install 'psycopg>=3.1')") from None
        self._psycopg = psycopg
        self.url = _redact(url)
        self._conninfo = url
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            raise StoreError(f"{self.url}: cannot connect: {str(e).strip()}") from None
        self._listen: Any = None
        self._lock = threading.RLock()
        self._tx: Any = None
        self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                cur = self._db.execute(_PLACEHOLDER.sub("%s", sql), tuple(params))
                return list(cur.fetchall()) if cur.description else []
            except self._psycopg.Error as e:
                raise StoreError(f"{self.url}: {str(e).strip()}") from None

    @contextmanager
    def _outer_transaction(self) -> Iterator[None]:
        try:
            with self._db.transaction():
                yield
        except self._psycopg.Error as e:
            raise StoreError(f"{self.url}: {str(e).strip()}") from None

    def migration_lock(self) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))

    def notify(self, payload: str) -> None:
        self.execute("SELECT pg_notify(?, ?)", (CHANNEL, payload))

    def listen(self) -> None:
        if self._listen is None:
            try:
                self._listen = self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
                self._listen.execute(f"LISTEN {CHANNEL}")
            except self._psycopg.Error as e:
                raise StoreError(f"{self.url}: cannot LISTEN: {str(e).strip()}") from None

    def wait(self, timeout: float) -> bool:
        self.listen()
        got = False
        for _ in self._listen.notifies(timeout=timeout, stop_after=1):
            got = True
        return got

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._listen is not None:
                self._listen.close()
