"""The virtual NOR flash behaves like the real parts (simflash rules)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkflash.virtual.nor_flash import DeviceReset, NorFlash
from sparkflash.virtual.state import CoreState

_open: list[NorFlash] = []


def make(tmp_path: Path, **kw: object) -> NorFlash:
    f = NorFlash(tmp_path / "f.bin", 0, 0x4000, 0x1000, **kw)  # type: ignore[arg-type]
    _open.append(f)
    return f


@pytest.fixture(autouse=True)
def _close_flashes() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def test_fresh_flash_is_erased(tmp_path: Path) -> None:
    f = make(tmp_path)
    assert f.read(0, 0x4000) == b"\xff" * 0x4000


def test_program_only_clears_bits(tmp_path: Path) -> None:
    f = make(tmp_path)
    f.program(0x10, b"\x0f")
    f.program(0x10, b"\xf0")  # over unerased flash: AND, as real NOR
    assert f.read(0x10, 1) == b"\x00"


def test_erase_resets_whole_sector_only(tmp_path: Path) -> None:
    f = make(tmp_path)
    f.program(0x0FFF, b"\x00\x00")  # straddles sectors 0 and 1
    assert f.erase_sector(0x0800)
    assert f.read(0x0FFF, 2) == b"\xff\x00"


def test_protected_range_ignores_erase_and_program(tmp_path: Path) -> None:
    f = make(tmp_path, protected=((0x1000, 0x2000),))
    f.program(0x0FFE, b"\x00" * 4)
    assert f.read(0x0FFE, 4) == b"\x00\x00\xff\xff"
    assert not f.erase_sector(0x1000)


def test_reset_fault_leaves_a_partial_write(tmp_path: Path) -> None:
    f = make(tmp_path)
    f.reset_after_programs = 1
    with pytest.raises(DeviceReset):
        f.program(0, b"\x00" * 8)
    assert f.read(0, 8) == b"\x00" * 4 + b"\xff" * 4


def test_image_file_persists(tmp_path: Path) -> None:
    f = make(tmp_path)
    f.program(0x123, b"abc")
    f.close()
    assert (tmp_path / "f.bin").read_bytes()[0x123:0x126] == b"abc"


def test_core_state_keeps_identity_and_bootloader(tmp_path: Path) -> None:
    s = CoreState.open(tmp_path / "c")
    did = s.device_id
    assert s.device_private_key().key_size == 1024
    s.internal.program(0x08000000, b"\x00" * 16)  # write-protected: ignored
    assert s.internal.read(0x08000000, 16) == b"SPARK-BOOTLOADER"
    s.close()
    s2 = CoreState.open(tmp_path / "c")
    assert s2.device_id == did
    s2.close()


def test_reset_installs_pending_ota_image(tmp_path: Path) -> None:
    s = CoreState.open(tmp_path / "c")
    image = bytes(range(256)) * 16
    s.external.write_erased(0x60000, image)
    s.info["flags"]["ota_pending"] = True
    assert s.reset()
    assert s.internal.read(0x08005000, len(image)) == image
    assert s.info["flags"] == {"ota_pending": False, "ota_flashed": True}
    assert not s.reset()
    s.close()
