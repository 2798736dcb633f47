"""SQLite, the default: one file in WAL mode (readers never block the writer), stdlib sqlite3.

Several processes on one machine may share the file: `BEGIN IMMEDIATE` takes the write
lock at the start of every write transaction, so a claim reads and marks its rows with no
other writer in between (SQLite has no row locks; the lease in the row does the rest). A
wake-up is any commit by another connection, seen by polling `PRAGMA data_version` on a
connection of its own.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sparkflash.fleet.backend import Backend, StoreError

__all__ = ["SqliteBackend"]

POLL_S = 0.02


class SqliteBackend(Backend):
    dialect = "sqlite"
    skip_locked = ""  # BEGIN IMMEDIATE already excludes every other writer
    lock_row = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"{path}: cannot open the fleet database: {e}") from None
        if mode != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode (journal_mode={mode}); use a local file system")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._watch: sqlite3.Connection | None = None
        self._seen = 0
        self._lock = threading.RLock()
        self._depth = 0

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.IntegrityError as e:
                raise StoreError(f"{self.path}: {e} in: {sql.split()[0]} ...") from None
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from None

    @contextmanager
    def _outer_transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot start a transaction: {e}") from None
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def migration_lock(self) -> None:
        pass  # BEGIN IMMEDIATE holds the only write lock

    def notify(self, payload: str) -> None:
        pass  # the commit itself is the wake-up (data_version changes for every other connection)

    def listen(self) -> None:
        if self._watch is None:
            self._watch = self._connect()
            self._seen = self._watch.execute("PRAGMA data_version").fetchone()[0]

    def wait(self, timeout: float) -> bool:
        self.listen()
        assert self._watch is not None
        end = time.monotonic() + timeout
        while True:
            now = self._watch.execute("PRAGMA data_version").fetchone()[0]
            if now != self._seen:
                self._seen = now
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(POLL_S, left))

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._watch is not None:
                self._watch.close()
