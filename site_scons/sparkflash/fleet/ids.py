"""Full-match rules for everything that names a fleet row; every value from outside passes here first.

Ids reach the database from the network (a device's handshake), the admin API and the
command line; one rule each, checked before any query, so a bad value is refused with
what was wrong rather than stored or matched loosely.
"""

from __future__ import annotations

import re

from sparkflash.errors import InputError

__all__ = [
    "CHANNEL_REF",
    "STORED_REF",
    "device_id",
    "instance_id",
    "label",
    "region_name",
    "release_ref",
    "rollout_id",
    "sha256_hex",
]

_DEVICE = re.compile(r"[0-9a-f]{24}")
_ROLLOUT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_LABEL = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# s3://bucket/key...: S3 bucket naming rules, then a key of safe path segments (no "..", no "//")
_S3 = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9_.+=-]+)+")
# channel:<bucket prefix URL>#<channel name>, e.g. channel:s3://demo/sparkflash/example#stable
# stored:<sha256 of the manifest>: a signed release posted to the server and kept in its own store
STORED_REF = re.compile(r"stored:(?P<sha256>[0-9a-f]{64})")
CHANNEL_REF = re.compile(r"channel:(?P<url>s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9_.+=-]+)+)#(?P<channel>[a-z0-9][a-z0-9_.-]{0,62})")


def _check(rule: re.Pattern[str], value: object, what: str, hint: str) -> str:
    if not isinstance(value, str) or rule.fullmatch(value) is None:
        raise InputError(f"{what} {value!r} is not valid: {hint}")
    return value


def device_id(value: object) -> str:
    """24 lower-case hex digits (the STM32 96-bit unique id), as the handshake carries it."""
    return _check(_DEVICE, value, "device id", "24 lower-case hex digits")


def rollout_id(value: object) -> str:
    return _check(_ROLLOUT, value, "rollout id", "1-63 of a-z 0-9 '-', starting with a letter or digit")


def instance_id(value: object) -> str:
    """The name of one server instance (it owns claims and connections)."""
    return _check(_INSTANCE, value, "instance id", "1-64 of A-Z a-z 0-9 _ . : -, starting with a letter or digit")


def label(value: object) -> str:
    """A device group name."""
    return _check(_LABEL, value, "label", "1-63 of a-z 0-9 _ . -, starting with a letter or digit")


def region_name(value: object) -> str:
    return _check(_REGION, value, "region name", "1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit")


def sha256_hex(value: object) -> str:
    return _check(_SHA256, value, "sha256", "64 lower-case hex digits")


def release_ref(value: object) -> str:
    """A release by reference: `s3://bucket/key/...`, `channel:s3://bucket/prefix#name`, or `stored:SHA256`
    (a signed manifest the server keeps in its own store, posted through the admin API); never a path."""
    if isinstance(value, str) and STORED_REF.fullmatch(value):
        return value
    if (isinstance(value, str) and (_S3.fullmatch(value) or CHANNEL_REF.fullmatch(value))
            and ".." not in value.split("#")[0].split("/")):
        return value
    raise InputError(f"release {value!r} is not valid: an s3://bucket/key URL or channel:s3://bucket/prefix#channel "
                     "(the server fetches and verifies releases itself; a local path never crosses the API)")
