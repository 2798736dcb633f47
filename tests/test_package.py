"""The package SCons imports and the one pip installs are the same files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sparkflash
from sparkflash.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_package_lives_under_site_scons() -> None:
    assert Path(sparkflash.__file__).resolve().parent == ROOT / "site_scons" / "sparkflash"


def test_protocols_are_sans_io() -> None:
    forbidden = ("import socket", "import serial", "import usb", "import time", "import threading",
                 "import asyncio", "from socket", "from serial", "from usb", "from time", "print(")
    offenders = [
        f"{p.name}: {bad}"
        for p in (ROOT / "site_scons" / "sparkflash" / "protocols").glob("*.py")
        for bad in forbidden
        if bad in p.read_text()
    ]
    assert offenders == []


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "sparkflash", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"sparkflash {sparkflash.__version__}"


def test_unknown_command_exits_2(capsys: object) -> None:
    try:
        main(["no-such-command"])
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("argparse accepted an unknown command")
