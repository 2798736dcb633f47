"""One place where a library error becomes a SCons stop: `scons: *** [target] message`,
no traceback, exit 2 — the SCons tools wrap their actions with it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import SCons.Errors

from sparkflash.errors import SparkflashError

__all__ = ["stop_on_error"]


@contextmanager
def stop_on_error() -> Iterator[None]:
    try:
        yield
    except SparkflashError as e:
        raise SCons.Errors.StopError(str(e)) from None
