"""`dfu pack ADDRESS FILE ...` (esptool's order) makes the same file as the older FILE@ADDRESS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparkflash.cli import main


def test_pairs_and_at_spelling_give_identical_files(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(os.urandom(10))
    (tmp_path / "b.bin").write_bytes(os.urandom(20))
    a, b = str(tmp_path / "a.bin"), str(tmp_path / "b.bin")
    assert main(["dfu", "pack", "0x80000", b, "0x08005000", a, "-o", str(tmp_path / "pairs.dfu")]) == 0
    assert main(["dfu", "pack", f"{b}@0x80000", f"{a}@0x08005000", "--output", str(tmp_path / "at.dfu")]) == 0
    assert (tmp_path / "pairs.dfu").read_bytes() == (tmp_path / "at.dfu").read_bytes()


def test_an_address_without_a_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dfu", "pack", "0x80000", "-o", str(tmp_path / "x.dfu")]) == 2
    assert "has no FILE after it" in capsys.readouterr().err
    assert not (tmp_path / "x.dfu").exists()
