"""One exception tree; `cli.main` is the only place that turns it into exit codes.

Messages say what went wrong and where (file:line, region, address), and what to do next.
The library never prints or exits.
"""

from __future__ import annotations

__all__ = [
    "SparkflashError",
    "InputError",
    "ToolchainError",
    "DeviceError",
    "TransportError",
    "DeviceGone",
    "TransportTimeout",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "VerifyError",
    "PublishError",
    "NoSuchChannel",
]


class SparkflashError(Exception):
    """Base of every error the user should see as one clear line (no traceback)."""

    exit_code = 1


class InputError(SparkflashError):
    """Bad input: manifest YAML, keys, addresses, command-line values."""

    exit_code = 2


class ToolchainError(SparkflashError):
    """A required host tool (arm-none-eabi-gcc, dfu-util, ...) is missing or unusable."""

    exit_code = 2


class VerifyError(SparkflashError):
    """Bytes on the device or in a release do not match what was signed."""

    exit_code = 3


class DeviceError(SparkflashError):
    """The device or the link to it failed."""

    exit_code = 4


class TransportError(DeviceError):
    """The port/socket/USB layer failed (as opposed to the protocol)."""


class DeviceGone(TransportError):
    """The device disappeared (port closed, USB unplugged, connection dropped)."""


class TransportTimeout(TransportError):
    """No answer from the device in time."""


class ProtocolError(DeviceError):
    """A protocol exchange went wrong."""

    exit_code = 5


class LocalProtocolError(ProtocolError):
    """We asked for something the protocol does not allow (a bug or bad parameters)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed or unexpected, or cancelled."""


class PublishError(SparkflashError):
    """Publishing to or fetching from object storage failed."""

    exit_code = 6


class NoSuchChannel(InputError, PublishError):
    """A channel name the store has no record for: a mistyped name is bad input (exit 2),
    though it was found out by asking S3."""
