"""Sector planning and the flasher's layout check, without a device."""

from __future__ import annotations

import pytest

from sparkflash.boards import load_board
from sparkflash.deploy.dfu import DfuFlasher
from sparkflash.deploy.dfu_plan import chunks, plan_write
from sparkflash.errors import InputError
from sparkflash.manifest.model import Region
from sparkflash.protocols.dfu_layout import Layout, parse_layout


def test_plan_skips_matching_and_keeps_neighbours() -> None:
    cur = b"A" * 16 + b"\xff" * 16 + b"C" * 16
    plan = plan_write(0x100, 16, cur, 0x10A, b"xxxxxxxxxxxx")  # covers 0x10A..0x116: sectors 0x100, 0x110
    assert plan.desired == b"A" * 10 + b"x" * 6 + b"x" * 6 + b"\xff" * 10 + b"C" * 16
    assert plan.changed == (0x100, 0x110) and plan.skipped == 1 and plan.blank == {0x110}
    assert plan.runs() == [(0x100, 0x120)]
    same = plan_write(0x100, 16, plan.desired, 0x10A, b"xxxxxxxxxxxx")
    assert same.changed == () and same.skipped == 3
    forced = plan_write(0x100, 16, plan.desired, 0x10A, b"xxxxxxxxxxxx", force=True)
    assert forced.changed == (0x100, 0x110, 0x120) and forced.blank == frozenset()


def test_runs_split_at_unchanged_sectors_and_blank_chunks_are_left_out() -> None:
    cur = b"\0" * 64
    data = b"\0" * 16 + b"\xff" * 16 + b"\0" * 16 + b"\1" * 16
    plan = plan_write(0, 16, cur, 0, data)
    assert plan.runs() == [(16, 32), (48, 64)]
    assert chunks(0, b"\xff" * 8 + b"a" * 8, 8, skip_blank=True) == [(3, 8, b"a" * 8)]


class LayoutOnly:
    """Answers select() with a given layout; any transfer is a test failure."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def device_id(self) -> str:
        return "stub"

    def select(self, alt: int) -> Layout:
        return self.layout

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"{name} called: a transfer happened")


def test_read_only_segment_in_the_devices_layout_is_refused() -> None:
    """The board data says writable, the device's own layout says read-only: refused before any transfer."""
    layout = parse_layout("@Internal Flash  /0x08000000/40*001Ka,88*001Kg")
    r = Region("fw", "internal", 0x08005000, 4096, "0" * 64, 0, ())
    with pytest.raises(InputError, match=r"'fw'.*0x08005000.*type 'a'"):
        DfuFlasher(LayoutOnly(layout), load_board("spark-core")).write_region(r, bytes(4096), lambda d, t: None)
