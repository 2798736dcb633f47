"""The real Spark tree sets of ../shared/peers for the build tests: where they are, how to
unpack one, and what a built set holds (imported by conftest.py and the tests)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PEERS", "TREE_SETS", "BuiltSet", "require_peers", "unpack_set"]

PEERS = Path(__file__).resolve().parents[2].parent / "shared" / "peers"
TREE_SETS = ("spark_11", "flasher", "flasher_hal")
_PARTS = ("core-firmware", "core-common-lib", "core-communication-lib")


def require_peers(*archives: str) -> Path:
    """../shared/peers with these archives; skip locally without them, fail under CI."""
    missing = [a for a in archives if not (PEERS / a).is_file()]
    if missing:
        why = f"needs {', '.join(missing)} from {PEERS} (the real Spark trees; not in the repository)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return PEERS


def unpack_set(name: str, dest: Path) -> Path:
    """Unpack one tree set side by side under dest/<name>/; returns its core-firmware."""
    peers = require_peers(*(f"{part}-{name}.tar.gz" for part in _PARTS))
    root = dest / name
    if not (root / "core-firmware").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        for part in _PARTS:
            with tarfile.open(peers / f"{part}-{name}.tar.gz") as tar:
                tar.extractall(root, filter="data")
    return root / "core-firmware"


@dataclass(frozen=True)
class BuiltSet:
    """One tree set built by its makefiles (in `firmware`) and by scons (in `checkout`)."""

    name: str
    firmware: Path
    checkout: Path
    make: subprocess.CompletedProcess[str]
    scons: subprocess.CompletedProcess[str]


