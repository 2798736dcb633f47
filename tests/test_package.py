"""The package SCons imports and the one pip installs are the same files."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sparkflash
from sparkflash.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_package_lives_under_site_scons() -> None:
    assert Path(sparkflash.__file__).resolve().parent == ROOT / "site_scons" / "sparkflash"


def test_protocols_are_sans_io() -> None:
    """protocols/ are pure state machines: no I/O, clock or thread modules, no printing."""
    forbidden = {"socket", "serial", "usb", "time", "threading", "asyncio", "select", "subprocess"}
    offenders = []
    for p in (ROOT / "site_scons" / "sparkflash" / "protocols").glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                mods = ["print"]
            else:
                continue
            offenders += [f"{p.name}:{node.lineno}: {m}" for m in mods if m.split(".")[0] in forbidden | {"print"}]
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
