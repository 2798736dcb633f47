"""The agent in firmware: it compiles for the Core with -Wall -Wextra -Werror, its board
constants are the board map's, and `scons AGENT=1` links it into the real spark_11 tree
(wrapping setup()/loop()), passes the image size check and reports its cost."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash import device_agent
from sparkflash.boards import load_board
from sparkflash.device_agent.cost import FLASH_GOAL, RAM_GOAL
from sparkflash.firmware.workspace import make_checkout, run_scons

ARM = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Os", "-mcpu=cortex-m3", "-mthumb", "-ffunction-sections"]


def test_portable_sources_compile_for_the_core(tool: Callable[[str], str], tmp_path: Path) -> None:
    gcc = tool("arm-none-eabi-gcc")
    for src in device_agent.portable_sources():  # (scons AGENT=1 below compiles them as one unit)
        out = tmp_path / f"{src.stem}.o"
        proc = subprocess.run([gcc, *ARM, f"-I{device_agent.include_dir()}", "-c", str(src), "-o", str(out)],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert out.stat().st_size > 0


def test_board_header_matches_the_board_map() -> None:
    text = (device_agent.include_dir() / "sfa_board.h").read_text()
    c = {m[1]: int(m[2], 16) for m in re.finditer(r"#define (SFA_\w+) (0x[0-9a-fA-F]+)u", text)}
    board = load_board("spark-core")
    internal, external = board.memory("internal"), board.memory("external")
    assert (c["SFA_INTERNAL_BASE"], c["SFA_INTERNAL_SIZE"]) == (internal.base, internal.size)
    assert (c["SFA_EXTERNAL_BASE"], c["SFA_EXTERNAL_SIZE"], c["SFA_SECTOR_SIZE"]) == (external.base, external.size,
                                                                                       external.sector_size)
    for name, key in [("scratch", "SCRATCH"), ("release_record", "RECORD"), ("ota", "OTA"), ("user", "USER")]:
        area = external.area(name)
        assert (c[f"SFA_{key}_START"], c[f"SFA_{key}_SIZE"]) == (area.start, area.size), name
    assert c["SFA_KEYS_START"] == external.area("server_key").start
    assert c["SFA_KEYS_START"] + c["SFA_KEYS_SIZE"] == external.area("device_key").end
    assert c["SFA_FACTORY_START"] == external.area("factory").start
    assert (c["SFA_FIRMWARE_ADDRESS"], c["SFA_FIRMWARE_MAX"]) == (board.firmware_address, board.firmware_max_size)
    record = external.area("release_record")
    for other in ("server_key", "server_address", "device_key", "factory", "backup", "ota"):
        a = external.area(other)
        assert record.end <= a.start or a.end <= record.start, other  # outside keys and firmware slots


@pytest.mark.parametrize("tree", ["spark_11", "flasher"])
def test_scons_agent_links_into_the_real_trees(tree: str, peer_trees: Callable[[str], Path], tool: Callable[[str], str],
                                               tmp_path: Path) -> None:
    """spark_11 (core-firmware 6c98a17a0) and flasher_additions (5e41341d6, whose library has
    SaveBegin: the agent's sfcaps then says "agent save"), each with its own sibling libraries."""
    tool("arm-none-eabi-gcc")
    trees = peer_trees(tree)
    checkout = make_checkout(tmp_path / "checkout")
    built = run_scons(checkout, "-j2", f"CORE_FIRMWARE={trees / 'core-firmware'}", "AGENT=1", timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    out = checkout / "build" / "release"
    cost = (out / "agent.size").read_text()
    m = re.fullmatch(r"sparkflash agent: flash (\d+) B \(goal <= \d+\), ram (\d+) B \(goal <= \d+\), (\d+) objects\n", cost)
    assert m, cost
    flash, ram, objects = map(int, m.groups())
    assert objects == 1 + len(device_agent.core_sources())  # the portable sources as one unit, and the binding
    assert 3000 < flash <= FLASH_GOAL and 0 < ram <= RAM_GOAL, cost  # issue #13's budget, on both trees
    syms = subprocess.run([tool("arm-none-eabi-nm"), str(out / "firmware.elf")], capture_output=True, text=True,
                          check=True).stdout
    # -fwhole-program: the rest of the agent is inlined or local (t) to its unit
    for name in ("__wrap_setup", "__wrap_loop", "sfa_agent_begin", "sfa_agent_poll", "sfa_cloud_call"):
        assert re.search(rf" [Tt] {name}$", syms, re.MULTILINE), name
    assert (out / "firmware.bin").stat().st_size <= load_board("spark-core").firmware_max_size
    # sfcaps is "save" only where the library takes SaveBegin (the server then sends files)
    obj = (out / "sparkflash_agent" / "sfa_core.o").read_bytes()
    assert (b"agent save\0" in obj, b"agent\0" in obj) == (tree == "flasher", tree != "flasher")


def test_agent_on_a_tree_without_usb_serial_is_refused_clearly(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "checkout")  # the example tree: no USB stack to bind to
    r = run_scons(checkout, "AGENT=1")
    assert r.returncode != 0
    assert "AGENT=1:" in r.stderr and "spark_wiring_usbserial.h" in r.stderr, r.stderr[-2000:]
    assert not (checkout / "build" / "release" / "firmware.bin").exists()


def test_wheel_ships_every_agent_source() -> None:
    """Each C/C++ file of the agent matches a [tool.setuptools.package-data] glob."""
    import fnmatch
    import tomllib

    root = device_agent.source_dir()
    pyproject = tomllib.loads((root.parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["sparkflash"]
    files = [p.relative_to(root.parent).as_posix() for p in root.rglob("*") if p.suffix in (".c", ".h", ".cpp")]
    assert len(files) >= 15
    for f in files:
        assert any(fnmatch.fnmatch(f, g) for g in globs), f
