"""Device agent cost in firmware (issue #13: goal <= 6 KiB flash, <= 1.5 KiB RAM): a
core-firmware tree built with and without `AGENT=1`, the agent's kept sections from the
map file, and the whole image's growth.

    tools/bench agent [--core-firmware /path/to/core-firmware]   (default: spark_11 from ../shared/peers)

Without a tree only the agent's portable objects are measured (arm-none-eabi-size of each
object compiled -Os for the Cortex-M3; an upper bound: the link drops unused functions).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from sparkflash import device_agent
from sparkflash.device_agent.cost import FLASH_GOAL, RAM_GOAL
from sparkflash.firmware.workspace import PEERS, make_checkout, run_scons, unpack_tree_set
from sparkflash.scons.sparkflash_agent import SIZE_FLAGS

_USED = re.compile(r"^(flash|ram)\s+(\d+)\s", re.MULTILINE)


def _build(tree: Path, where: Path, agent: bool) -> dict[str, int]:
    checkout = make_checkout(where)
    r = run_scons(checkout, "-j2", f"CORE_FIRMWARE={tree}", f"AGENT={int(agent)}", timeout=1800)
    if r.returncode:
        raise SystemExit(f"bench agent: scons failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    used = {k: int(v) for k, v in _USED.findall((checkout / "build/release/firmware.size").read_text())}
    if agent:
        m = re.search(r"flash (\d+) B .* ram (\d+) B", (checkout / "build/release/agent.size").read_text())
        assert m
        used.update(agent_flash=int(m.group(1)), agent_ram=int(m.group(2)))
    return used


def _objects(tmp: Path) -> dict[str, int]:
    text = data = bss = 0
    for src in device_agent.portable_sources():
        obj = tmp / f"{src.stem}.o"
        subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-Os", "-mcpu=cortex-m3", "-mthumb", "-ffunction-sections",
                        "-fdata-sections", *SIZE_FLAGS, f"-I{device_agent.include_dir()}", "-c", str(src), "-o", str(obj)],
                       check=True)
        out = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True, check=True).stdout
        t, d, b = map(int, out.splitlines()[1].split()[:3])
        text, data, bss = text + t, data + d, bss + b
    return {"objects_flash": text + data, "objects_ram": data + bss}


def run(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="tools/bench agent")
    p.add_argument("--core-firmware", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res: dict[str, Any] = {"goal_flash": FLASH_GOAL, "goal_ram": RAM_GOAL, **_objects(Path(tmp))}
        tree = args.core_firmware.resolve() if args.core_firmware else None
        if tree is None and PEERS.is_dir():  # spark_11 from ../shared/peers, as tools/bench build does
            tree = unpack_tree_set("spark_11", Path(tmp) / "peers")
        if tree is not None:
            base, with_agent = _build(tree, Path(tmp) / "base", False), _build(tree, Path(tmp) / "agent", True)
            res.update(tree=str(tree) if args.core_firmware else "spark_11 (../shared/peers)",
                       agent_flash=with_agent["agent_flash"], agent_ram=with_agent["agent_ram"],
                       image_growth_flash=with_agent["flash"] - base["flash"],
                       image_growth_ram=with_agent["ram"] - base["ram"])
    return res
