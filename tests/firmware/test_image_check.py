"""After every link the image is checked as the bootloader will use it (initial SP inside
RAM, reset vector Thumb and inside the application area, pointing at code); a broken
startup fails the build with the reason and no .bin/.hex is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkflash.firmware.workspace import run_scons

STARTUP = "examples/core-firmware/src/startup/startup_stm32f10x_md.S"


def _broken_build(checkout: Path, old: str, new: str, path: str = STARTUP) -> str:
    src = checkout / path
    text = src.read_text()
    assert old in text
    src.write_text(text.replace(old, new, 1))
    r = run_scons(checkout)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    out = checkout / "build/release"
    assert (out / "firmware.elf").exists()
    assert not (out / "firmware.bin").exists() and not (out / "firmware.hex").exists()
    return r.stderr


def test_startup_object_missing_is_refused(fresh_checkout: Path) -> None:
    """The flasher trees' failure mode: the .S is not in the build, the link still succeeds."""
    err = _broken_build(fresh_checkout, "ASRC += $(TARGET_STARTUP_PATH)/startup_stm32f10x_md.S", "ASRC +=",
                        "examples/core-firmware/src/startup/build.mk")
    assert "firmware.elf: no startup code" in err


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    .word _estack\n", "    .word 0x30000000\n", "initial SP 0x30000000 (word 0 at 0x08005000) is not inside RAM"),
        ("    .word Reset_Handler\n", "    .word 0x08005200\n",
         "reset vector 0x08005200 (word 1 at 0x08005004) lacks the Thumb bit"),
        ("    .word Reset_Handler\n", "    .word 0x08000201\n", "reset vector 0x08000201 points outside the application area"),
    ],
    ids=["sp-outside-ram", "reset-not-thumb", "reset-outside-app"],
)
def test_broken_vector_table_is_refused(fresh_checkout: Path, old: str, new: str, message: str) -> None:
    err = _broken_build(fresh_checkout, old, new)
    assert message in err and "firmware.elf" in err
