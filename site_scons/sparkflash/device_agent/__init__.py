"""The sparkflash device agent: C sources a Core application links to be flashed and
checked at any address over serial (and OTA), shipped in the wheel so the SCons plugin
and the tests can build them. Wire protocol and on-flash formats: docs/device-agent.md.

Layout: include/ (public headers), src/ (portable C99, no heap), core/ (the Spark Core
binding, C++), host/ (the host binding: pty + flash files, and the libFuzzer harnesses).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["core_sources", "core_unit_source", "host_sources", "include_dir", "ota_app_sources", "portable_sources",
           "source_dir"]


def source_dir() -> Path:
    """Root of the agent's C sources inside the installed package."""
    return Path(__file__).resolve().parent


def include_dir() -> Path:
    return source_dir() / "include"


def portable_sources() -> list[Path]:
    """The agent itself (every target builds these)."""
    return sorted((source_dir() / "src").glob("*.c"))


def core_sources() -> list[Path]:
    """The Spark Core binding (USB serial, sFLASH_*, Spark.function/variable)."""
    return sorted((source_dir() / "core").glob("*.cpp"))


def core_unit_source() -> Path:
    """portable_sources() as one translation unit, which the Core build compiles with
    -fwhole-program (smaller: issue #13's flash budget) instead of the files one by one."""
    return source_dir() / "core" / "sfa_core_unit.c"


def host_sources() -> list[Path]:
    """The host binding's main (pty, NOR flash files, millis())."""
    return [source_dir() / "host" / "sfa_host.c"]


def ota_app_sources() -> list[Path]:
    """The agent as the application of the OTA harness (tests/peers/ota_harness: the real
    core-communication-lib built for the host), answering its sf_app_* hooks."""
    return [*portable_sources(), source_dir() / "host" / "sfa_ota_app.c"]
