"""What a database must offer the fleet store: statements, transactions, row locks, wake-ups.

The store writes its SQL once with `?` placeholders; each backend runs it on its own
driver. The differences that matter for several server instances live here and only
here: how a transaction takes its write lock, how claimed rows are kept from a second
claimer, and how another instance is woken.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sparkflash.errors import SparkflashError

__all__ = ["Backend", "StoreError"]


class StoreError(SparkflashError):
    """The fleet database failed or holds something this version cannot use (exit 1)."""

    exit_code = 1


class Backend(abc.ABC):
    dialect: str  # "sqlite" or "postgresql"
    skip_locked: str  # appended to a claim's SELECT: rows another transaction holds are skipped
    lock_row: str  # appended to a SELECT of one row to hold it until the transaction ends

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (`?` placeholders); its rows, or [] when it returns none."""

    _lock: threading.RLock
    _depth: int = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction: committed on exit, rolled back on an exception; a nested one
        joins the transaction around it."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with self._outer_transaction():
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0

    @abc.abstractmethod
    def _outer_transaction(self) -> AbstractContextManager[None]:
        """The driver's own transaction (the outermost `transaction`)."""

    @abc.abstractmethod
    def migration_lock(self) -> None:
        """Inside a transaction: keep a second instance from migrating at the same time."""

    @abc.abstractmethod
    def notify(self, payload: str) -> None:
        """Wake other instances (delivered when the current transaction commits)."""

    @abc.abstractmethod
    def listen(self) -> None:
        """Start collecting wake-ups: those after this call are seen by the next `wait`."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` s for a wake-up; True if one came. A hint: re-read after it."""

    @abc.abstractmethod
    def close(self) -> None: ...
