"""Optional: a real core-firmware tree built by our rules and by its own makefiles gives a
byte-identical .bin. The trees cannot be committed, so this runs only when the CORE_FIRMWARE
environment variable points at a core-firmware checkout with its two sibling libraries."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.firmware.coretree import COMMON, COMMUNICATION
from sparkflash.firmware.workspace import make_checkout, run_make, run_scons

TREE = os.environ.get("CORE_FIRMWARE")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not TREE,
        reason="set CORE_FIRMWARE=/path/to/core-firmware (spark_11, siblings core-common-lib and "
        "core-communication-lib beside it) to compare with its makefiles; the trees are not in the repo",
    ),
]


def test_same_bin_as_the_makefiles(tmp_path: Path, tool: Callable[[str], str]) -> None:
    tool("make")
    source = Path(str(TREE)).resolve()
    for name in ("core-firmware", COMMON, COMMUNICATION):
        shutil.copytree(source.parent / name, tmp_path / "trees" / name, symlinks=True)
    firmware = tmp_path / "trees" / "core-firmware"
    checkout = make_checkout(tmp_path / "checkout")
    built = run_scons(checkout, "-j2", f"CORE_FIRMWARE={firmware}")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    made = run_make(firmware, "-j2")
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    ours = (checkout / "build/release/firmware.bin").read_bytes()
    theirs = (firmware / "build/core-firmware.bin").read_bytes()
    assert len(ours) == len(theirs) and ours == theirs
