"""What the agent costs in a linked firmware: the input sections of its objects that the
linker kept (from the GNU ld map file), as flash and RAM bytes."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FLASH_GOAL", "RAM_GOAL", "AgentCost", "agent_cost"]

FLASH_GOAL, RAM_GOAL = 6 * 1024, 1536  # issue #13's budget
_SECTION = re.compile(r"^ (\.[\w.$]+|COMMON)\s*(?:\n\s+)?\s*(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\S+\.o)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class AgentCost:
    flash: int  # .text, .rodata, .data (its load image)
    ram: int  # .data, .bss
    objects: int

    def line(self) -> str:
        return (f"sparkflash agent: flash {self.flash} B (goal <= {FLASH_GOAL}), ram {self.ram} B (goal <= {RAM_GOAL}), "
                f"{self.objects} objects")


def agent_cost(map_text: str, object_marker: str = "sparkflash_agent/") -> AgentCost:
    """Sum the kept sections of objects whose path contains object_marker."""
    flash = ram = 0
    objs: set[str] = set()
    in_map = map_text.find("Linker script and memory map")
    for m in _SECTION.finditer(map_text, max(in_map, 0)):
        name, size, obj = m.group(1), int(m.group(3), 16), m.group(4)
        if object_marker not in obj or size == 0:
            continue
        if name.startswith((".text", ".rodata", ".ARM.exidx", ".ARM.extab", ".init_array", ".glue")):
            flash += size
        elif name.startswith(".data"):
            flash += size
            ram += size
        elif name.startswith((".bss", "COMMON")):
            ram += size
        else:
            continue  # debug info, .comment, .ARM.attributes: not on the device
        objs.add(obj)
    return AgentCost(flash, ram, len(objs))
