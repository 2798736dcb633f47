"""Board facts as data (memory maps, sector sizes, USB ids), with one lookup.

No code anywhere branches on a board name: everything board-specific is read from
the YAML files beside this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkflash.errors import InputError

__all__ = ["Area", "Memory", "Board", "board_file", "load_board", "BOARD_DIR"]

BOARD_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Area:
    """A named address range inside one memory (e.g. the OTA slot)."""

    name: str
    start: int
    size: int
    protected: bool = False

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.start + self.size


@dataclass(frozen=True)
class Memory:
    """One flash memory: its address window, erase unit and named areas."""

    name: str
    base: int
    size: int
    sector_size: int
    write_align: int
    erase_value: int
    dfu_alt: int
    dfu_layout: str
    areas: tuple[Area, ...]
    description: str = ""
    erase_max_s: float = 0.0  # worst-case (datasheet maximum) time of one sector erase

    @property
    def end(self) -> int:
        return self.base + self.size

    def area(self, name: str) -> Area:
        for a in self.areas:
            if a.name == name:
                return a
        raise KeyError(name)

    def contains(self, address: int, size: int = 1) -> bool:
        return self.base <= address and address + size <= self.end

    def sectors(self, address: int, size: int) -> range:
        """Start addresses of every erase sector touched by [address, address+size)."""
        if size <= 0:
            return range(0)
        first = address - (address - self.base) % self.sector_size
        return range(first, address + size, self.sector_size)

    def protected_overlap(self, address: int, size: int) -> Area | None:
        """The first protected area that [address, address+size) touches, if any."""
        for a in self.areas:
            if a.protected and address < a.end and a.start < address + size:
                return a
        return None


@dataclass(frozen=True)
class Board:
    name: str
    mcu: str
    memories: tuple[Memory, ...]
    ram_base: int
    ram_size: int
    usb: dict[str, tuple[int, int]]
    firmware_memory: str
    firmware_address: int
    firmware_max_size: int
    source: Path

    def memory(self, name: str) -> Memory:
        for m in self.memories:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.memories)
        raise InputError(f"board {self.name}: no memory named {name!r} (known: {known})")

    def find_area(self, name: str) -> tuple[Memory, Area] | None:
        for m in self.memories:
            for a in m.areas:
                if a.name == name:
                    return m, a
        return None


def _memory(name: str, d: dict[str, Any]) -> Memory:
    areas = tuple(
        Area(an, int(a["start"]), int(a["size"]), bool(a.get("protected", False)))
        for an, a in (d.get("areas") or {}).items()
    )
    for k in ("size", "sector_size", "write_align"):
        if k in d and int(d[k]) <= 0:
            raise ValueError(f"memory {name!r}: {k} must be positive, not {d[k]!r}")
    return Memory(
        name=name,
        base=int(d["base"]),
        size=int(d["size"]),
        sector_size=int(d["sector_size"]),
        write_align=int(d.get("write_align", 1)),
        erase_value=int(d.get("erase_value", 0xFF)),
        dfu_alt=int(d.get("dfu_alt", 0)),
        dfu_layout=str(d.get("dfu_layout", "")),
        areas=areas,
        description=str(d.get("description", "")),
        erase_max_s=float(d.get("erase_max_ms", 0)) / 1000.0,
    )


def board_file(name_or_path: str | Path, search: tuple[Path, ...] = ()) -> Path:
    """The YAML file of a board by name (searching `search` dirs, then the built-in ones)
    or by path, without reading it (scons names it as a dependency on every run)."""
    p = Path(name_or_path)
    candidates = [p] if p.suffix in (".yaml", ".yml") else [d / f"{name_or_path}.yaml" for d in (*search, BOARD_DIR)]
    for c in candidates:
        if c.is_file():
            return c
    known = sorted(f.stem for f in BOARD_DIR.glob("*.yaml"))
    raise InputError(f"unknown board {str(name_or_path)!r} (known: {', '.join(known)})")


def load_board(name_or_path: str | Path, search: tuple[Path, ...] = ()) -> Board:
    """Load a board by name (searching `search` dirs, then the built-in ones) or by path."""
    import yaml  # here, not at import: a no-op scons run never needs it (~15 ms)

    c = board_file(name_or_path, search)
    try:
        # libyaml when the wheel has it
        d = yaml.load(c.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        fw = d["firmware"]
        return Board(
            name=str(d["name"]),
            mcu=str(d.get("mcu", "")),
            memories=tuple(_memory(n, m) for n, m in d["memories"].items()),
            ram_base=int(d["ram"]["base"]),
            ram_size=int(d["ram"]["size"]),
            usb={k: (int(v["vid"]), int(v["pid"])) for k, v in (d.get("usb") or {}).items()},
            firmware_memory=str(fw["memory"]),
            firmware_address=int(fw["address"]),
            firmware_max_size=int(fw["max_size"]),
            source=c,
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, yaml.YAMLError) as e:
        raise InputError(f"{c}: malformed board description: {' '.join(str(e).split())[:300]}") from None
    except OSError as e:
        raise InputError(f"{c}: cannot read the board description: {e.strerror or e}") from None
