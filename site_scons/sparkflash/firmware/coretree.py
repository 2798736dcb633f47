"""A core-firmware tree set as its own makefiles build it, ready for the SCons tool.

Nothing here is a table of one release's flags: `makeprobe` asks make what a clean build
runs (every build.mk the makefiles include, wherever it lives; include directories,
defines and flags of each makefile; the link line), and this module groups those
commands by tree. What it adds is only what building these 2014 trees with GCC 12 needs
(NEWLIB_COMPAT: the command-line overrides `run_make` gives make too) and the checks
that turn a tree that cannot build into an error naming what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sparkflash.errors import InputError
from sparkflash.firmware.makeprobe import (
    Archive,
    Compile,
    Link,
    MakePlan,
    cached_probe,
    probe,
)

__all__ = [
    "COMMON",
    "COMMUNICATION",
    "FIRMWARE",
    "NEWLIB_COMPAT_DEFINES",
    "NEWLIB_COMPAT_LINK",
    "BuildOptions",
    "Component",
    "FirmwareTree",
    "load_tree",
]

COMMON = "core-common-lib"
COMMUNICATION = "core-communication-lib"
FIRMWARE = "core-firmware"

#: GCC 12 + newlib 3.3 need these for the 2014 trees: 32-bit time_t and no sys/select.h
#: (the CC3000 driver declares its own); given right after the compiler, as `CC=` to make.
NEWLIB_COMPAT_DEFINES = ("_USE_LONG_TIME_T", "_SYS_SELECT_H")
#: ... and libnosys inside libc_nano's link group (the link driver, as `CPP=` to make).
NEWLIB_COMPAT_LINK = ("--specs=nosys.specs",)


@dataclass(frozen=True)
class Component:
    """One tree: the compiles its makefile runs (in make's order) and its archive."""

    name: str
    root: Path
    build_dir: Path
    compiles: tuple[Compile, ...]
    archive: Archive | None

    def object_path(self, c: Compile) -> str:
        """Where SCons puts `c`'s object, relative to the component's output directory:
        make's own path below the build directory (e.g. obj/src/main.o)."""
        rel = os.path.relpath(c.output, self.build_dir)
        return "/".join("_up_" if part == ".." else part for part in Path(rel).parts)


@dataclass(frozen=True)
class BuildOptions:
    """The makefiles' knobs, passed to make as `NAME=value`; `extra` are any others
    (e.g. a variable a tree's build.mk tests)."""

    app: str | None = None
    test: str | None = None
    debug: bool = False
    swd_jtag: bool = False
    product_id: str | None = None
    product_version: str | None = None
    newlib_compat: bool = True
    extra: tuple[tuple[str, str], ...] = ()

    def make_variables(self) -> dict[str, str]:
        v: dict[str, str] = {}
        if self.app:
            v["APP"] = self.app
        if self.test:
            v["TEST"] = self.test
        if self.debug:
            v["DEBUG_BUILD"] = "y"
        if self.swd_jtag:
            v["USE_SWD_JTAG"] = "y"
        if self.product_id:
            v["SPARK_PRODUCT_ID"] = self.product_id
        if self.product_version:
            v["PRODUCT_FIRMWARE_VERSION"] = self.product_version
        v.update(self.extra)
        return v


@dataclass(frozen=True)
class FirmwareTree:
    """The libraries (archive order of the link) and the firmware with its link."""

    libraries: tuple[Component, ...]
    firmware: Component
    link: Link
    target: str
    options: BuildOptions
    compile_prefix: tuple[str, ...] = ()
    link_prefix: tuple[str, ...] = ()
    roots: tuple[Path, ...] = field(default=())

    @property
    def components(self) -> tuple[Component, ...]:
        return (*self.libraries, self.firmware)


def _tree_root(build_dir: Path) -> Path:
    return build_dir.parent if build_dir.name == "build" else build_dir


def _check_siblings(root: Path) -> None:
    """A sibling the firmware makefile names (../core-common-lib/...), or either when there
    is no makefile yet, must exist: say where it was expected."""
    text = (root / "build" / "makefile").read_text(errors="replace") if (root / "build" / "makefile").is_file() else ""
    for name in (COMMON, COMMUNICATION):
        path = root.parent / name
        if (name in text or not text) and not path.is_dir():
            raise InputError(
                f"{name} not found: expected it at {path} (sibling of {root}, as its build/makefile expects ../{name}/)")


def _build_dir(root: Path) -> Path:
    for d in (root / "build", root):
        if any((d / n).is_file() for n in ("makefile", "Makefile", "GNUmakefile")):
            return d
    raise InputError(f"{root}: no build/makefile found: is this a core-firmware tree? (sparkflash reads the tree's "
                     "own makefiles)")


def _components(plan: MakePlan) -> tuple[list[Component], Component, Link]:
    if len(plan.links) != 1:
        raise InputError(f"make would link {len(plan.links)} images ({', '.join(str(k.output) for k in plan.links)}); "
                         "expected one")
    link = plan.links[0]
    by_dir: dict[Path, list[Compile]] = {}
    for c in plan.compiles:
        by_dir.setdefault(c.cwd, []).append(c)
    archives = {a.cwd: a for a in plan.archives}
    comps = {d: Component(_tree_root(d).name, _tree_root(d), d, tuple(cs), archives.get(d)) for d, cs in by_dir.items()}
    for d, a in archives.items():
        if d not in comps:
            raise InputError(f"{a.output}: make archives objects it never compiles")
    if link.cwd not in comps:
        raise InputError(f"{link.output}: make links no object it compiles")
    firmware = comps.pop(link.cwd)
    produced = {c.output for comp in (*comps.values(), firmware) for c in comp.compiles}
    for comp in comps.values():
        if comp.archive:
            for m in comp.archive.members:
                if m not in produced:
                    raise InputError(f"{comp.archive.output}: member {m} is built by no command make runs")
    for item in link.args:
        if isinstance(item, tuple) and item[0] == "obj" and item[1] not in produced:
            raise InputError(f"{link.output}: link input {item[1]} is built by no command make runs")
    # library order = the order their archives appear on the link line
    order: list[Component] = []
    for item in link.args:
        if isinstance(item, tuple) and item[0] in ("libdir", "lib"):
            for comp in comps.values():
                if comp not in order and comp.archive and item[1] in (comp.archive.output.parent, comp.archive.output):
                    order.append(comp)
    order += [c for c in comps.values() if c not in order]
    return order, firmware, link


def _refuse_device_os(root: Path) -> None:
    """Device OS (particle-iot/device-os, `make PLATFORM=core` in main/) is refused: its
    makefiles do not build with this toolchain, so there is no image to be identical to."""
    for d in (root, root.parent):
        if (d / "build" / "platform-id.mk").is_file() and (d / "main").is_dir():
            version = "?"
            vm = d / "build" / "version.mk"
            for line in vm.read_text(errors="replace").splitlines() if vm.is_file() else []:
                if line.startswith("VERSION_STRING"):
                    version = line.split("=", 1)[1].strip()
            raise InputError(
                f"{d}: Device OS {version} is not supported: its own `make PLATFORM=core` fails with GCC 12 "
                "even with the newlib overrides (-Werror=register in CMSIS core_cmFunc.h, 'NULL' not declared in "
                "wiring/src/spark_wiring_rgb.cpp, -Werror=address-of-packed-member in hal, -Werror=array-parameter "
                "in mbedtls), so there is no image to match byte for byte; build it with its makefiles and the GCC "
                "4.9 it was written for, or give a core-firmware tree (docs/build.md)")


def load_tree(firmware_root: str | Path, opts: BuildOptions = BuildOptions(), cache_dir: Path | None = None,
              pending: list[Callable[[], None]] | None = None) -> FirmwareTree:
    """Resolve a core-firmware checkout and its siblings by asking make what it builds.

    Raises InputError naming what is missing: the tree, a sibling, an APP/TEST directory,
    or whatever make itself reports (a source a build.mk lists, a linker script...).
    With `cache_dir`, make's plan is reused while the trees' directories and makefiles
    are unchanged (writes deferred to `pending` when given).
    """
    root = Path(firmware_root).resolve()
    if not root.is_dir():
        raise InputError(f"CORE_FIRMWARE={firmware_root}: no such directory {root}")
    _refuse_device_os(root)
    _check_siblings(root)
    build_dir = _build_dir(root)
    for var, sub in (("APP", "applications"), ("TEST", "tests")):
        name = opts.app if var == "APP" else opts.test
        if name and not (root / sub / name).is_dir():
            raise InputError(f"{var}={name}: no such {'application' if var == 'APP' else 'test'} directory {root / sub / name}")
    variables = opts.make_variables()
    plan = probe(build_dir, variables) if cache_dir is None else cached_probe(build_dir, variables, cache_dir, pending)
    libraries, firmware, link = _components(plan)
    for c in firmware.compiles + tuple(x for lib in libraries for x in lib.compiles):
        if not c.source.is_file():
            raise InputError(f"{c.source}: source make would compile does not exist")
    for item in link.args:
        if isinstance(item, tuple) and item[0] == "script" and not item[1].is_file():
            raise InputError(f"{link.output}: linker script {item[1]} does not exist")
    compat = opts.newlib_compat
    return FirmwareTree(
        libraries=tuple(libraries),
        firmware=firmware,
        link=link,
        target=link.output.stem,
        options=opts,
        compile_prefix=tuple(f"-D{d}" for d in NEWLIB_COMPAT_DEFINES) if compat else (),
        link_prefix=NEWLIB_COMPAT_LINK if compat else (),
        roots=tuple(c.root for c in (*libraries, firmware)),
    )
