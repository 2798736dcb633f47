"""`sparkflash flash` refuses bad input before any device is opened."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from sparkflash.cli import main
from sparkflash.cli.deploy_cmd import adhoc_release
from sparkflash.errors import InputError


def stand_in_firmware(path: Path, size: int) -> Path:
    """A vector table (SP in RAM, Thumb reset handler in the application) and filler."""
    path.write_bytes(struct.pack("<II", 0x20005000, 0x08005131) + bytes(range(256)) * (size // 256))
    return path


def blob(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "data.bin"
    p.write_bytes(bytes(range(256)) * (n // 256) + bytes(n % 256))
    return p


def test_adhoc_release_describes_one_external_region(tmp_path: Path) -> None:
    rel = adhoc_release(blob(tmp_path, 5000), 0x80000, "spark-core", False, tmp_path / "store")
    (r,) = rel.manifest.regions
    assert (r.memory, r.address, r.size, r.kind) == ("external", 0x80000, 5000, "data")
    assert r.erase == (0x80000, 0x81000)
    assert rel.blob(r) == (tmp_path / "data.bin").read_bytes()


def test_firmware_address_is_a_firmware_region(tmp_path: Path) -> None:
    # #15: anything at the application address must start with a vector table (stand-in firmware has one)
    rel = adhoc_release(stand_in_firmware(tmp_path / "fw.bin", 1016), 0x08005000, "spark-core", False,
                        tmp_path / "store")
    assert rel.manifest.regions[0].kind == "firmware"
    assert rel.manifest.regions[0].memory == "internal"


@pytest.mark.parametrize(
    ("address", "size", "message"),
    [
        (0x2000, 612, "protected area 'device_key'"),
        (0x08000000, 1024, "protected area 'bootloader'"),
        (0x1FF000, 8192, "run past the end of external flash"),
        (0x30000000, 16, "in no memory"),
    ],
)
def test_refused_before_any_transfer(tmp_path: Path, address: int, size: int, message: str) -> None:
    with pytest.raises(InputError, match=message):
        adhoc_release(blob(tmp_path, size), address, "spark-core", False, tmp_path / "store")


def test_protected_area_allowed_explicitly(tmp_path: Path) -> None:
    rel = adhoc_release(blob(tmp_path, 612), 0x2000, "spark-core", True, tmp_path / "store")
    assert rel.manifest.regions[0].allow_protected


def test_cli_reports_error_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["flash", "--via", "serial", "--port", "/dev/null", "--address", "0x2000", str(blob(tmp_path, 16))])
    assert code == 2
    err = capsys.readouterr().err
    assert "sparkflash: error:" in err and "0x00002000" in err and "--allow-protected" in err


def test_cli_rejects_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flash", "--via", "serial", "--port", "x", "--address", "0x80000", str(tmp_path / "nope.bin")]) == 2
    assert "nope.bin" in capsys.readouterr().err
