"""Release YAML with line marks, so every validation error can say `file:line:`.

PyYAML forgets where values came from once it builds dicts, and it silently keeps the
last of two duplicate keys. This loader keeps the line of every mapping, key and
sequence item (1-based) and refuses duplicate keys, so that a mistake is reported
where the user made it, not as a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sparkflash.errors import InputError

__all__ = ["Marked", "MarkedList", "load_yaml", "loads_yaml", "where"]


class Marked(dict):  # type: ignore[type-arg]
    """A mapping that remembers its own line and the line of each key."""

    line: int
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class MarkedList(list):  # type: ignore[type-arg]
    """A sequence that remembers its own line and the line of each item."""

    line: int
    item_lines: list[int]

    def line_of(self, i: int) -> int:
        return self.item_lines[i] if 0 <= i < len(self.item_lines) else self.line


class _Loader(yaml.SafeLoader):
    """SafeLoader that builds Marked/MarkedList and rejects duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Marked:
    loader.flatten_mapping(node)
    out = Marked()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {out.key_lines[key]})", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> MarkedList:
    out = MarkedList(loader.construct_object(n, deep=True) for n in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [n.start_mark.line + 1 for n in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def where(origin: str, line: int) -> str:
    """The `file:line` prefix every release error starts with."""
    return f"{origin}:{line}"


def loads_yaml(text: str, origin: str) -> Any:
    """Parse YAML text; syntax errors become InputError at the offending line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise InputError(f"{where(origin, line)}: YAML error: {what}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{where(origin, 1)}: YAML error: {e}") from None
    except RecursionError:
        raise InputError(f"{where(origin, 1)}: YAML nested too deeply") from None


def load_yaml(path: Path) -> Any:
    """Read and parse one release YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such release file") from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise InputError(f"{path}:1: not a UTF-8 text file: {e}") from None
    return loads_yaml(text, str(path))
