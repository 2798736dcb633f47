"""Firmware build support for the SCons tools: toolchain discovery, the core-firmware
source-set rules, the build.mk reader and the size report (no SCons imports here, so
everything is testable without running scons)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PACKAGE_DIR"]

#: Where these modules live: SCons targets whose bytes they shape depend on their files.
PACKAGE_DIR = Path(__file__).resolve().parent
