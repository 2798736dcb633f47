"""The real tree sets (../shared/peers: spark_11, flasher, flasher_hal), each in its default
configuration: scons gives the same .bin and .hex, byte for byte, as the trees' own
makefiles. Each set is built once per session by each tool (about 10 s each here)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from firmware_peers import TREE_SETS, BuiltSet

#: .bin sizes the makefiles give with GCC 12.2 (issue #12's table): a change in the
#: trees or the toolchain shows up here first, not as a silent pass of two equal errors.
MAKE_SIZES = {"spark_11": 88484, "flasher": 89168, "flasher_hal": 90164}


@pytest.mark.parametrize("name", TREE_SETS)
def test_default_configuration_byte_identical(name: str, built_set: Callable[[str], BuiltSet]) -> None:
    b = built_set(name)
    assert b.make.returncode == 0, b.make.stdout[-2000:] + b.make.stderr[-2000:]
    assert b.scons.returncode == 0, b.scons.stdout[-2000:] + b.scons.stderr[-2000:]
    for ext in ("bin", "hex"):
        theirs = (b.firmware / "build" / f"core-firmware.{ext}").read_bytes()
        ours = (b.checkout / "build" / "release" / f"firmware.{ext}").read_bytes()
        assert ours == theirs, f"{name}: firmware.{ext} differs ({len(ours)} vs make's {len(theirs)} bytes)"
    assert len((b.checkout / "build/release/firmware.bin").read_bytes()) == MAKE_SIZES[name]
