"""A tiny Cortex-M3 application built by the real arm-none-eabi-gcc: its ELF, and objcopy's .bin and .hex."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

LINKER_SCRIPT = """
MEMORY { FLASH (rx) : ORIGIN = 0x08005000, LENGTH = 108K
         RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 20K }
SECTIONS {
  .text : { KEEP(*(.isr_vector)) *(.text*) *(.rodata*) } > FLASH
  .data : { *(.data*) } > RAM AT > FLASH
  .bss  : { *(.bss*) } > RAM
}
"""

SOURCE = """
volatile unsigned counter = 0x12345678u;          /* .data: initial value stored in flash after .text */
volatile unsigned zeroed;                         /* .bss: not in the image */
void reset_handler(void) { for (;;) { counter++; zeroed = counter; } }
__attribute__((section(".isr_vector"), used))
void (*const vectors[2])(void) = { (void (*)(void))0x20005000u, reset_handler };
"""


@dataclass(frozen=True)
class App:
    elf: Path
    bin: Path
    hex: Path


@pytest.fixture(scope="session")
def app_image(tmp_path_factory: pytest.TempPathFactory, tool: Callable[[str], str]) -> App:
    gcc = tool("arm-none-eabi-gcc")
    objcopy = str(Path(gcc).with_name("arm-none-eabi-objcopy"))
    d = tmp_path_factory.mktemp("app")
    (d / "app.ld").write_text(LINKER_SCRIPT)
    (d / "app.c").write_text(SOURCE)
    app = App(d / "app.elf", d / "app.bin", d / "app.hex")
    subprocess.run([gcc, "-mcpu=cortex-m3", "-mthumb", "-Os", "-nostdlib", "-T", str(d / "app.ld"),
                    "-o", str(app.elf), str(d / "app.c")], check=True, capture_output=True)
    subprocess.run([objcopy, "-O", "binary", str(app.elf), str(app.bin)], check=True)
    subprocess.run([objcopy, "-O", "ihex", str(app.elf), str(app.hex)], check=True)
    return app
