"""Find the GNU Arm Embedded toolchain (arm-none-eabi-*) on PATH or under ARM_TOOLCHAIN.

A missing toolchain is the most common first-run failure, so the error is one line that
names the Debian package to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sparkflash.errors import ToolchainError

__all__ = ["DEBIAN_PACKAGE", "PREFIX", "Toolchain", "find_toolchain"]

PREFIX = "arm-none-eabi-"
DEBIAN_PACKAGE = "gcc-arm-none-eabi"
_TOOLS = ("gcc", "g++", "ar", "objcopy", "size")


@dataclass(frozen=True)
class Toolchain:
    """Absolute paths of the cross tools, all from one directory."""

    bindir: Path
    prefix: str = PREFIX

    def tool(self, name: str) -> str:
        return str(self.bindir / f"{self.prefix}{name}")

    def version(self) -> str:
        """First line of `gcc --version` (part of the build record, not of the graph)."""
        out = subprocess.run([self.tool("gcc"), "--version"], capture_output=True, text=True, check=False)
        return (out.stdout.splitlines() or ["unknown"])[0]


def find_toolchain(arm_toolchain: str | None = None, path: str | None = None) -> Toolchain:
    """The toolchain under `arm_toolchain` (its bin/ or itself), else the first on `path`.

    Raises ToolchainError naming the Debian package when gcc is not found.
    """
    if arm_toolchain:
        root = Path(arm_toolchain)
        candidates = [root / "bin", root]
        where = f"ARM_TOOLCHAIN={arm_toolchain}"
    else:
        search = path if path is not None else os.environ.get("PATH", "")
        found = shutil.which(f"{PREFIX}gcc", path=search)
        candidates = [Path(found).parent] if found else []
        where = "PATH"
    for d in candidates:
        if all(os.access(d / f"{PREFIX}{t}", os.X_OK) for t in _TOOLS):
            return Toolchain(d.resolve())
    raise ToolchainError(
        f"{PREFIX}gcc not found in {where}: install the Debian package {DEBIAN_PACKAGE} "
        f"(apt-get install {DEBIAN_PACKAGE} libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib) "
        f"or set ARM_TOOLCHAIN=<dir with bin/{PREFIX}gcc>"
    )
