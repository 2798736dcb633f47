"""Every name that comes from outside (YAML, manifests, S3, USB, serial) is checked here.

One full-match rule per kind of name (`re.fullmatch`: no `$`, which lets a trailing
newline through). Host paths and S3 keys are built only from names that passed, so a
device id `../../x` or a version `1.0.0+x/../../y` never becomes a path or a key segment.
"""

from __future__ import annotations

import re

from sparkflash.errors import InputError

__all__ = [
    "RULES", "board_name", "bucket", "channel", "check", "device_id", "digest", "key_id", "prefix", "region_name",
    "release_name", "valid", "version",
]

_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"

# kind -> (pattern, what a valid value looks like)
RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "device id": (re.compile(r"[0-9a-f]{24}"), "24 lowercase hex digits"),
    "release name": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"),
                     "1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)"),
    "region name": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"),
                    "1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)"),
    "board name": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"),
                   "1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)"),
    "memory name": (re.compile(r"[a-z][a-z0-9_]{0,31}"), "1-32 of a-z 0-9 _ (starting with a letter)"),
    "channel": (re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}"), "1-32 of a-z 0-9 _ . - (starting with a letter or digit)"),
    "version": (re.compile(rf"{_NUM}\.{_NUM}\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?(?:\+{_BUILD_ID}(?:\.{_BUILD_ID})*)?"),
                ("semver (MAJOR.MINOR.PATCH), optionally -PRERELEASE and +BUILD of dot-separated 0-9 A-Z a-z - "
                 "identifiers, no leading zeros, at most 64 characters")),
    "digest": (re.compile(r"[0-9a-f]{64}"), "64 lowercase hex digits (sha256)"),
    "key id": (re.compile(r"[0-9a-f]{64}"), "64 lowercase hex digits"),
    # S3 bucket naming rules (the DNS-compatible subset): 3-63 chars, no "..", not an IP address.
    "bucket": (re.compile(r"(?!\d+\.\d+\.\d+\.\d+\Z)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"),
               "3-63 of a-z 0-9 . - (starting and ending with a letter or digit, no '..')"),
    "prefix component": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}"),
                         "1-128 of A-Z a-z 0-9 _ . + - (starting with a letter or digit)"),
}
MAX_VERSION = 64  # a version is an S3 key segment and a file name


def valid(kind: str, value: object) -> bool:
    """True when `value` is a str that fully matches the rule for `kind`."""
    pattern = RULES[kind][0]
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        return False
    return not (kind == "version" and len(value) > MAX_VERSION)


def check(kind: str, value: object, where: str = "") -> str:
    """`value` if valid, else InputError naming the kind, the (bounded) value and `where`."""
    if valid(kind, value):
        assert isinstance(value, str)
        return value
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    rule = f"is not {RULES[kind][1]}" if kind == "version" else f"is not valid: must be {RULES[kind][1]}"
    raise InputError(f"{where + ': ' if where else ''}{kind} {shown} {rule}")


def device_id(v: object, where: str = "") -> str:
    return check("device id", v, where)


def release_name(v: object, where: str = "") -> str:
    return check("release name", v, where)


def region_name(v: object, where: str = "") -> str:
    return check("region name", v, where)


def board_name(v: object, where: str = "") -> str:
    return check("board name", v, where)


def version(v: object, where: str = "") -> str:
    return check("version", v, where)


def digest(v: object, where: str = "") -> str:
    return check("digest", v, where)


def key_id(v: object, where: str = "") -> str:
    return check("key id", v, where)


def channel(v: object, where: str = "") -> str:
    return check("channel", v, where)


def bucket(v: object, where: str = "") -> str:
    return check("bucket", v, where)


def prefix(v: str, where: str = "") -> str:
    """An S3 prefix: "" or "/"-separated components that each pass the component rule."""
    if v:
        for part in v.split("/"):
            check("prefix component", part, where or f"prefix {v!r}")
    return v
