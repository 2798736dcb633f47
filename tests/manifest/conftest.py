"""Fixtures for release-manifest tests: a tiny fake firmware and YAML written to disk.

The firmware is a handful of bytes with a valid Cortex-M vector table (initial SP at the
top of the Core's RAM, Thumb reset handler inside the application area), so these tests
never need the ARM toolchain.
"""

from __future__ import annotations

import struct
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from softhsm_token import token  # noqa: F401  (the session SoftHSM2 token fixture)
from sparkflash.manifest.keys import generate_key

SP_TOP = 0x20005000  # end of the STM32F103CB's 20 KiB RAM
RESET = 0x08005101  # odd: a Thumb address just past the vector table


def firmware_bytes(size: int = 64, sp: int = SP_TOP, reset: int = RESET) -> bytes:
    body = bytes((i * 7) & 0xFF for i in range(size - 8))
    return struct.pack("<II", sp, reset) + body


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    p = tmp_path / "firmware.bin"
    p.write_bytes(firmware_bytes())
    return p


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str], Path]:
    """Write dedented YAML to tmp_path/release.yaml, with a.bin (4 KiB) and small.bin (100 B) beside it."""

    def write(text: str, name: str = "release.yaml") -> Path:
        (tmp_path / "a.bin").write_bytes(bytes(range(256)) * 16)  # 4 KiB: one external sector
        (tmp_path / "small.bin").write_bytes(bytes(range(100)))
        p = tmp_path / name
        p.write_text(textwrap.dedent(text).lstrip("\n"))
        return p

    return write


@pytest.fixture
def dev_key(tmp_path: Path) -> tuple[Path, Path]:
    """(private, public) PEM paths of a throwaway Ed25519 key."""
    priv = tmp_path / "keys" / "dev.pem"
    pub, _ = generate_key(priv)
    return priv, pub
