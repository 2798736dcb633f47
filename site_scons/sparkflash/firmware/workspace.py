"""Throwaway checkouts for running scons: the tests and tools/benchmarks/build.py build in
copies so they never touch the developer's build/ and can compare two directories."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from sparkflash.firmware import PACKAGE_DIR
from sparkflash.firmware.coretree import COMMON, COMMUNICATION, NEWLIB_COMPAT_DEFINES, NEWLIB_COMPAT_LINK
from sparkflash.firmware.toolchain import find_toolchain

__all__ = ["PEERS", "REPO_ROOT", "clean_scons", "make_checkout", "run_make", "run_scons", "unpack_tree_set"]

REPO_ROOT = PACKAGE_DIR.parents[2]
PEERS = REPO_ROOT.parent / "shared" / "peers"  # the real trees, as archives (../shared/peers/README)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc", ".sconsign*")


def make_checkout(dest: Path, root: Path = REPO_ROOT) -> Path:
    """Copy what a build needs (SConstruct, site_scons/, examples/) from `root` to `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "SConstruct", dest / "SConstruct")
    for d in ("site_scons", "examples"):
        shutil.copytree(root / d, dest / d, ignore=_IGNORE, symlinks=True, dirs_exist_ok=True)
    return dest


def clean_scons(checkout: Path) -> None:
    """`rm -r build .sconsign*`: a checkout's outputs go, and SCons' records of them."""
    shutil.rmtree(checkout / "build", ignore_errors=True)
    for records in checkout.glob(".sconsign*"):
        records.unlink()


def _scons_command(launcher: bool = False) -> list[str]:
    """This interpreter's SCons if it has one (the venv), else the project venv's; with
    `launcher`, its sparkflash-scons (the console script, as a user runs it)."""
    python = sys.executable if importlib.util.find_spec("SCons") is not None else str(REPO_ROOT / ".venv/bin/python")
    if not Path(python).exists():
        return ["sparkflash-scons" if launcher else "scons"]
    if launcher:
        script = Path(python).with_name("sparkflash-scons")
        return [str(script)] if script.exists() else [python, "-m", "sparkflash.scons.launch"]
    return [python, "-m", "SCons"]


def run_scons(
    checkout: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600, launcher: bool = False
) -> subprocess.CompletedProcess[str]:
    """`scons -Q ARGS` in `checkout` with this interpreter (so it sees this venv's packages);
    `sparkflash-scons -Q ARGS` with `launcher`."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*_scons_command(launcher), "-Q", *args],
        cwd=checkout,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_make(firmware: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """A core-firmware tree's own makefile, with the GCC 12 overrides of
    shared/specs/core-firmware-build.md §1 (the yardstick our SCons rules must match)."""
    tc = find_toolchain()
    cc = " ".join([tc.tool("gcc"), *(f"-D{d}" for d in NEWLIB_COMPAT_DEFINES)])
    link = " ".join([tc.tool("g++"), *NEWLIB_COMPAT_LINK])
    cmd = ["make", "-C", str(firmware / "build"), f"CC={cc}", f"CPP={link}", f"MAKE_ARGS=--no-print-directory CC='{cc}'", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def unpack_tree_set(name: str, dest: Path, peers: Path = PEERS) -> Path:
    """Unpack one tree set (core-firmware and its two libraries, e.g. "spark_11") side by side
    under `dest`; its core-firmware. FileNotFoundError names a missing archive."""
    for part in ("core-firmware", COMMON, COMMUNICATION):
        archive = peers / f"{part}-{name}.tar.gz"
        if not archive.is_file():
            raise FileNotFoundError(f"{archive} not found (tree sets come from ../shared/peers)")
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    return dest / "core-firmware"
