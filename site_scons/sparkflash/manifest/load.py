"""Release YAML with line marks, so every validation error can say `file:line:`.

PyYAML forgets where values came from once it builds dicts, and it silently keeps the
last of two duplicate keys. This loader keeps the line of every mapping, key and
sequence item (1-based) and refuses duplicate keys, so that a mistake is reported
where the user made it, not as a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sparkflash.errors import InputError
from sparkflash.manifest.sources import read_regular

__all__ = ["INT_RE", "MAX_INT_DIGITS", "Marked", "MarkedList", "load_yaml", "loads_yaml", "where"]


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
    """SafeLoader that builds Marked/MarkedList, rejects duplicate keys, and reads scalars by
    YAML 1.2's core schema: PyYAML follows YAML 1.1, where `8:44:00:00` is a base-60 integer,
    `010` is octal 8, `1_000` is 1000 and `yes`/`off` are booleans."""


_INT_TAG, _FLOAT_TAG, _BOOL_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG, _BOOL_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
INT_RE = re.compile(r"[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+")  # decimal and 0x only (YAML 1.2 core, minus 0o)
_Loader.add_implicit_resolver(_INT_TAG, re.compile(rf"^(?:{INT_RE.pattern})$"), list("-+0123456789"))
_Loader.add_implicit_resolver(_FLOAT_TAG, re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
MAX_INT_DIGITS = 20  # more is never an address or a size: refuse before int() sees 5,000 digits


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if len(text) > MAX_INT_DIGITS or not INT_RE.fullmatch(text):
        raise yaml.constructor.ConstructorError(
            None, None, f"{text[:40]!r} is not a YAML 1.2 integer (decimal or 0x hex, at most "
                        f"{MAX_INT_DIGITS} characters)", node.start_mark)
    return int(text, 16) if text.startswith("0x") else int(text, 10)


def _construct_bool(loader: _Loader, node: yaml.ScalarNode) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


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
_Loader.add_constructor(_INT_TAG, _construct_int)
_Loader.add_constructor(_BOOL_TAG, _construct_bool)


MAX_YAML = 4 << 20  # a release YAML is a few KiB; 4 MiB leaves room for thousands of regions


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
    if not path.exists():
        raise InputError(f"{path}: no such release file")
    raw = read_regular(path, MAX_YAML)  # a FIFO or /dev/zero as the YAML: refused, never waited on
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}:1: not a UTF-8 text file: {e}") from None
    return loads_yaml(text, str(path))
