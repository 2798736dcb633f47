"""The core-firmware build rules: which sources, includes, defines and flags each tree gets.

These are the facts of the spark_11 makefiles (core-firmware/build/makefile,
core-common-lib/build/makefile, core-communication-lib/build/makefile; see
shared/specs/core-firmware-build.md §3-5) written as data, so that SCons compiles exactly
what make compiles. Source lists come from the trees' own build.mk files (makefrag.py);
what the makefiles themselves add (extra include dirs, defines, flags) is listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparkflash.errors import InputError
from sparkflash.firmware.makefrag import MakeVars, find_build_mks, rwildcard

__all__ = ["Source", "Component", "BuildOptions", "FirmwareTree", "load_tree", "COMMON", "COMMUNICATION", "FIRMWARE"]

COMMON = "core-common-lib"
COMMUNICATION = "core-communication-lib"
FIRMWARE = "core-firmware"

#: Code generation flags every compile (and the link) starts with.
CODEGEN = ("-g3", "-gdwarf-2", "-Os", "-mcpu=cortex-m3", "-mthumb")
#: The .S compile: no -Os, no -I, no -D (core-firmware makefile ASFLAGS).
ASFLAGS = ("-g3", "-gdwarf-2", "-mcpu=cortex-m3", "-mthumb", "-x", "assembler-with-cpp", "-fmessage-length=0")
#: core-common-lib include dirs the firmware makefile adds, in its order.
_COMMON_HEADERS = (
    "CMSIS/Include",
    "CMSIS/Device/ST/STM32F10x/Include",
    "STM32F10x_StdPeriph_Driver/inc",
    "STM32_USB-FS-Device_Driver/inc",
    "CC3000_Host_Driver",
    "SPARK_Firmware_Driver/inc",
    "SPARK_Services/inc",
)
_COMMUNICATION_HEADERS = ("lib/tropicssl/include", "src")
LINKER_SCRIPT = "linker/linker_stm32f10x_md_dfu.ld"
#: After the objects and archives on the link line (core-firmware makefile LDFLAGS).
LINK_TAIL = ("-nostartfiles", "-Xlinker", "--gc-sections")
LINK_LIBS = ("--specs=nano.specs", "-lc", "-lnosys", "-u", "_printf_float")
#: GCC 12 + newlib 3.3 need these (spec §1): 32-bit time_t and no sys/select.h.
NEWLIB_COMPAT_DEFINES = ("_USE_LONG_TIME_T", "_SYS_SELECT_H")
#: ... and libnosys inside libc_nano's link group (spec §1.3).
NEWLIB_COMPAT_LINK = ("--specs=nosys.specs",)


@dataclass(frozen=True)
class Source:
    """One compile: `rel` is the path inside its tree (also the object's path)."""

    path: Path
    rel: str
    lang: str  # "c", "cxx" or "asm"


@dataclass(frozen=True)
class Component:
    """One of the three trees as its makefile builds it."""

    name: str
    root: Path
    sources: tuple[Source, ...]
    include_dirs: tuple[Path, ...]
    defines: tuple[str, ...]
    cflags: tuple[str, ...]
    cxxflags: tuple[str, ...]
    archive: str | None


@dataclass(frozen=True)
class BuildOptions:
    """The makefiles' knobs: APP=, DEBUG_BUILD=y, USE_SWD_JTAG=y, product ids."""

    app: str | None = None
    debug: bool = False
    swd_jtag: bool = False
    product_id: int = 65535
    product_version: int = 65535
    newlib_compat: bool = True


@dataclass(frozen=True)
class FirmwareTree:
    """The three sibling trees, ready for the SCons tool to turn into nodes."""

    common: Component
    communication: Component
    firmware: Component
    linker_script: Path
    target: str
    link_flags: tuple[str, ...] = ()

    @property
    def components(self) -> tuple[Component, Component, Component]:
        return (self.common, self.communication, self.firmware)


def _option_defines(opts: BuildOptions) -> list[str]:
    return (["USE_SWD_JTAG"] if opts.swd_jtag else []) + ["DEBUG_BUILD" if opts.debug else "RELEASE_BUILD"]


def _sources(root: Path, mk: MakeVars) -> tuple[Source, ...]:
    """CSRC, then CPPSRC, then ASRC: the makefiles' ALLOBJ order (link/archive order)."""
    out: list[Source] = []
    seen: set[str] = set()
    for var, lang in (("CSRC", "c"), ("CPPSRC", "cxx"), ("ASRC", "asm")):
        for rel in mk.words(var):
            if rel in seen:
                continue
            seen.add(rel)
            path = root / rel
            if not path.is_file():
                raise InputError(f"{root}: build.mk lists {rel} ({var}) but {path} does not exist")
            out.append(Source(path, rel, lang))
    return tuple(out)


def _library(name: str, root: Path, extra_includes: tuple[str, ...], defines: list[str], cflags: tuple[str, ...]) -> Component:
    mk = MakeVars(root)
    for f in find_build_mks(root):
        mk.include(f)
    includes = [root / d for d in (*mk.words("INCLUDE_DIRS"), *extra_includes)] + [root / "build"]
    return Component(
        name=name,
        root=root,
        sources=_sources(root, mk),
        include_dirs=tuple(includes),
        defines=tuple(defines),
        cflags=cflags,
        cxxflags=("-fno-exceptions", "-fno-rtti"),
        archive=f"lib{name}.a",
    )


def _sibling(firmware_root: Path, name: str) -> Path:
    path = firmware_root.parent / name
    if not path.is_dir():
        raise InputError(
            f"{name} not found: expected it at {path} (sibling of {firmware_root}, "
            f"as the core-firmware makefile expects ../{name}/)"
        )
    return path


def _firmware(root: Path, common: Path, comm: Path, opts: BuildOptions, compat: list[str], defines: list[str]) -> Component:
    mk = MakeVars(root)
    cxx_std: tuple[str, ...] = ()
    if opts.app:
        usr = f"applications/{opts.app}/"
        if not (root / usr).is_dir():
            raise InputError(f"APP={opts.app}: no such application directory {root / usr}")
        cxx_std = ("-std=gnu++11",)
        mk.values.update(
            NO_APPLICATION_CPP="1",
            INCLUDE_DIRS=usr,
            CPPSRC=" ".join(p.relative_to(root).as_posix() for p in rwildcard(root / usr, "*.cpp")),
            CSRC=" ".join(p.relative_to(root).as_posix() for p in rwildcard(root / usr, "*.c")),
        )
    makefiles = rwildcard(root / "src", "build.mk")
    if not makefiles:
        raise InputError(f"{root}: no src/**/build.mk found: is this a core-firmware tree?")
    for f in makefiles:
        mk.include(f)
    includes = [root / d for d in mk.words("INCLUDE_DIRS")] + [root / "libraries/Serial2"]
    includes += [common / d for d in _COMMON_HEADERS] + [comm / d for d in _COMMUNICATION_HEADERS] + [root / "build"]
    return Component(
        name=FIRMWARE,
        root=root,
        sources=_sources(root, mk),
        include_dirs=tuple(includes),
        defines=tuple([*compat, "USE_STDPERIPH_DRIVER", "STM32F10X_MD", "DFU_BUILD_ENABLE", "SPARK=1", *defines]),
        cflags=("-ffunction-sections", "-Wall", "-fmessage-length=0", "-Werror=deprecated-declarations"),
        cxxflags=(*cxx_std, "-fno-rtti", "-fno-exceptions"),
        archive=None,
    )


def load_tree(firmware_root: str | Path, opts: BuildOptions = BuildOptions()) -> FirmwareTree:
    """Resolve a core-firmware checkout and its siblings into three components.

    Raises InputError naming the expected path when a tree or the linker script is missing.
    """
    root = Path(firmware_root).resolve()
    if not root.is_dir():
        raise InputError(f"CORE_FIRMWARE={firmware_root}: no such directory {root}")
    common, comm = _sibling(root, COMMON), _sibling(root, COMMUNICATION)
    script = root / LINKER_SCRIPT
    if not script.is_file():
        raise InputError(f"{root}: linker script not found: expected {script}")
    extra = _option_defines(opts)
    compat = list(NEWLIB_COMPAT_DEFINES) if opts.newlib_compat else []
    return FirmwareTree(
        common=_library(
            COMMON,
            common,
            ("CMSIS/Include", "CMSIS/Device/ST/STM32F10x/Include"),
            [*compat, "USE_STDPERIPH_DRIVER", "STM32F10X_MD", *extra],
            ("-ffunction-sections", "-Wall", "-Wno-switch", "-fmessage-length=0"),
        ),
        communication=_library(
            COMMUNICATION,
            comm,
            (),
            [*compat, f"SPARK_PRODUCT_ID={opts.product_id}", f"PRODUCT_FIRMWARE_VERSION={opts.product_version}", *extra],
            ("-ffunction-sections", "-fmessage-length=0", "-Wall"),
        ),
        firmware=_firmware(root, common, comm, opts, compat, extra),
        linker_script=script,
        target=opts.app or FIRMWARE,
        link_flags=NEWLIB_COMPAT_LINK if opts.newlib_compat else (),
    )
