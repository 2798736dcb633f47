"""Read the `build.mk` fragments of core-firmware trees without running make.

The three spark_11 makefiles take their source lists from `build.mk` files written in a
tiny subset of make: plain assignments, `+=`, `ifdef`/`ifndef`, `$(VAR)`,
`$(call target_files,DIR,PATTERN)` and `$(filter-out ...)`. Evaluating that subset here
gives SCons the same source sets and include order as make, from the same files, so a
tree that adds a source to its build.mk builds the same way under both.

Simplification (documented in docs/build.md): every value is expanded when it is
assigned, not when it is used. The fragments name their helper variables uniquely
(their own comments require it), so the result is the same.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from sparkflash.errors import InputError

__all__ = ["rwildcard", "find_build_mks", "MakeVars"]

_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(\+=|:=|\?=|=)\s*(.*)$")
_COND = re.compile(r"^(ifdef|ifndef)\s+([A-Za-z_][A-Za-z0-9_]*)\s*$")


def _listdir_sorted(d: Path) -> list[str]:
    """Entries as make's `$(wildcard d/*)` lists them: sorted (make >= 4.3), no dot-files."""
    try:
        return sorted(n for n in os.listdir(d) if not n.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def rwildcard(directory: Path, pattern: str) -> list[Path]:
    """make's recursive wildcard: matches in `directory` first, then each subdir, sorted."""
    names = _listdir_sorted(directory)
    found = [directory / n for n in names if fnmatch.fnmatchcase(n, pattern) and (directory / n).is_file()]
    for n in names:
        if (directory / n).is_dir():
            found.extend(rwildcard(directory / n, pattern))
    return found


def find_build_mks(root: Path) -> list[Path]:
    """Every build.mk under `root`, in the order the makefiles include them."""
    return rwildcard(root, "build.mk")


class MakeVars:
    """Variables of one makefile evaluation; `include()` reads one build.mk into them.

    `src_root` is the makefile's SRC_PATH: `target_files` results are relative to it.
    """

    def __init__(self, src_root: Path, initial: dict[str, str] | None = None) -> None:
        self.src_root = src_root
        self.values: dict[str, str] = dict(initial or {})

    def words(self, name: str) -> list[str]:
        """The variable's value split like make splits words."""
        return self.values.get(name, "").split()

    def expand(self, text: str, where: str) -> str:
        """Expand `$(...)` references in `text` (innermost first)."""
        out, i = [], 0
        while i < len(text):
            if text.startswith("$(", i):
                depth, j = 1, i + 2
                while j < len(text) and depth:
                    depth += {"(": 1, ")": -1}.get(text[j], 0)
                    j += 1
                if depth:
                    raise InputError(f"{where}: unbalanced $( in {text!r}")
                out.append(self._function(self.expand(text[i + 2 : j - 1], where), where))
                i = j
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    def _function(self, body: str, where: str) -> str:
        if body.startswith("call target_files,"):
            directory, _, pattern = body[len("call target_files,") :].partition(",")
            base = self.src_root / directory.strip()
            files = rwildcard(base, pattern.strip())
            return " ".join(p.relative_to(self.src_root).as_posix() for p in files)
        if body.startswith("filter-out "):
            patterns, _, text = body[len("filter-out ") :].partition(",")
            drop = set(patterns.split())
            return " ".join(w for w in text.split() if w not in drop)
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", body):
            return self.values.get(body, "")
        raise InputError(f"{where}: make construct $({body}) is not supported in build.mk files")

    def include(self, path: Path) -> None:
        """Evaluate one build.mk file."""
        active: list[bool] = []
        lines = path.read_text(errors="replace").replace("\\\n", " ").splitlines()
        for lineno, raw in enumerate(lines, 1):
            where = f"{path}:{lineno}"
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            cond = _COND.match(line)
            if cond:
                defined = bool(self.values.get(cond.group(2), "").strip())
                active.append(defined if cond.group(1) == "ifdef" else not defined)
                continue
            if line == "else":
                if not active:
                    raise InputError(f"{where}: else without ifdef")
                active[-1] = not active[-1]
                continue
            if line == "endif":
                if not active:
                    raise InputError(f"{where}: endif without ifdef")
                active.pop()
                continue
            if not all(active):
                continue
            m = _ASSIGN.match(line)
            if not m:
                raise InputError(f"{where}: unsupported line in build.mk: {raw.strip()!r}")
            name, op, value = m.group(1), m.group(2), self.expand(m.group(3).strip(), where)
            if op == "+=":
                self.values[name] = f"{self.values.get(name, '')} {value}".strip()
            elif op == "?=":
                self.values.setdefault(name, value)
            else:
                self.values[name] = value
        if active:
            raise InputError(f"{path}: ifdef without endif")
