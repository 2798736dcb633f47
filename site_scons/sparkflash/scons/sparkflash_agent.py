"""SCons part of `scons AGENT=1`: compile the sparkflash device agent (portable C + the Core
binding) with the firmware's flags plus -Wextra -Werror and a few size flags, link it with --wrap
for setup() and loop() (no application change), and report its cost from the map file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparkflash import device_agent
from sparkflash.device_agent.cost import FLASH_GOAL, RAM_GOAL, agent_cost
from sparkflash.firmware.coretree import FirmwareTree
from sparkflash.scons.arm_gcc import COMPILE_COM

__all__ = ["SIZE_FLAGS", "UNIT_FLAGS", "WRAP_FLAGS", "agent_objects", "agent_size_action"]

WRAP_FLAGS = ["-Wl,--wrap=setup", "-Wl,--wrap=loop"]  # C linkage in spark_utilities.h
# On top of the tree's -Os, for issue #13's flash budget (arm-none-eabi-gcc 12, measured on
# the agent): the second scheduling pass and loop-invariant hoisting only buy speed on an
# in-order Cortex-M3 (-60 B); jump threading and tail merging duplicate or reshuffle code
# there, and the priority register allocator spills less in the long functions (-90 B)
SIZE_FLAGS = ["-fno-schedule-insns2", "-fno-move-loop-invariants", "-fno-thread-jumps", "-fno-tree-tail-merge",
              "-fira-algorithm=priority"]
# The portable sources go in as one unit (core/sfa_core_unit.c): with -fwhole-program only the
# functions the binding calls stay external, the rest is inlined and specialised (-140 B). On
# that unit (measured one by one, in this order, each kept only if it saved): PHI-node and
# dominator-based redundancy passes and full redundancy elimination add compares and moves more
# than they save in the agent's many short branches (-80 B), sibling calls and block reordering
# duplicate epilogues and branch tails (-30 B), if-conversion lengthens IT blocks (-8 B)
UNIT_FLAGS = ["-fwhole-program", "-fno-optimize-sibling-calls", "-fno-ssa-phiopt", "-fno-tree-dominator-opts",
              "-fno-reorder-blocks", "-fno-tree-fre", "-fno-if-conversion"]


def agent_objects(env: Any, out: str, tree: FirmwareTree, maps: list[str]) -> list[Any]:
    """Objects of the agent, built in out/sparkflash_agent/ with the flags make uses for the
    tree's own C++ (firmware) and C files (firmware, else its libraries); their -I become
    -isystem: -Werror is for our code, not the tree's headers. The Core binding needs the
    spark_11-era wiring (USBSerial, Spark.function)."""
    firmware = tree.firmware
    import SCons.Errors

    if not (firmware.root / "inc" / "spark_wiring_usbserial.h").is_file():
        raise SCons.Errors.StopError(
            f"AGENT=1: {firmware.root} has no inc/spark_wiring_usbserial.h; the agent's Core binding needs a "
            "spark_11-era core-firmware tree (USB serial, Spark.function/variable), see docs/device-agent.md")
    inc = str(device_agent.include_dir())
    # flasher_additions' core-communication-lib has SaveBegin (SparkCallbacks.prepare_to_save_file):
    # the agent's `sfcaps` variable then tells the cloud server it may send files
    save_begin = any("prepare_to_save_file" in h.read_text(errors="replace")
                     for c in tree.libraries for h in [c.root / "src" / "spark_protocol.h"] if h.is_file())
    templates: dict[str, tuple[str, ...]] = {}
    for comp in (firmware, *tree.libraries):
        for c in comp.compiles:
            templates.setdefault(c.source.suffix, c.args)
    objs = []
    for src in [device_agent.core_unit_source(), *device_agent.core_sources()]:
        suffix = Path(src).suffix
        base = templates.get(suffix)
        if base is None:
            raise SCons.Errors.StopError(f"AGENT=1: make compiles no {suffix} file in {firmware.root}'s tree set "
                                         "to take the agent's flags from")
        args = [("-isystem" + a[2:]) if a.startswith("-I") else a for a in base]
        lang = ["-std=gnu99"] if suffix == ".c" else []
        defines = ["-DSFA_SAVE_BEGIN"] if save_begin else []
        unit = UNIT_FLAGS if src == device_agent.core_unit_source() else []
        aenv = env.Clone(SPARK_ARGS=[*tree.compile_prefix, f"-I{inc}", *(a.replace("$", "$$") for a in args), *lang,
                                     *SIZE_FLAGS, *unit, "-Wextra", "-Werror", *defines, *maps],
                         CCCOM=COMPILE_COM, CXXCOM=COMPILE_COM)
        objs.append(aenv.Object(f"{out}/sparkflash_agent/{Path(src).stem}.o", str(src))[0])
    return objs


def agent_size_action(target: Any, source: Any, env: Any) -> int:
    """Write (and print) the agent's cost; fails the build over budget only if AGENT_STRICT."""
    map_text = Path(str(source[0])).with_suffix(".map").read_text(errors="replace")
    cost = agent_cost(map_text)
    Path(str(target[0])).write_text(cost.line() + "\n")
    print(cost.line())
    if env.get("AGENT_STRICT") and (cost.flash > FLASH_GOAL or cost.ram > RAM_GOAL):
        print("sparkflash agent: over budget")
        return 1
    return 0
