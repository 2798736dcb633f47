"""The Core's listening-mode serial commands plus our extension, both ends, sans-I/O.

Stock firmware reacts to single keys at the start of a line (`i` prints the device id,
`f` starts a YMODEM firmware update into the OTA slot). Stock firmware gives the host no
way to choose an address (device-side-flashing.md §3), so we add ASCII line commands a
small C parser can handle: an upper-case verb, hex numbers, LF-terminated; one reply line
`OK ...` or `ERR <code> <text>`. Wire format: docs/serial-protocol.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkflash.boards import Memory
from sparkflash.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_LINE", "ERR_SYNTAX", "ERR_RANGE", "ERR_FLASH", "ERR_TRANSFER", "ERR_SIZE",
    "ID_TEXT", "FW_PROMPT", "FW_TOO_BIG", "FW_DONE", "FW_FAILED", "FW_RESTART", "FW_NOT_SUPPORTED",
    "Key", "Identify", "Checksum", "Save", "BadLine", "Request", "LineBuffer", "CommandReader",
    "ok", "err", "encode_id", "encode_sum", "encode_save", "Reply", "Refused", "parse_reply", "parse_sum",
    "save_range_error",
]

MAX_LINE = 80
ERR_SYNTAX, ERR_RANGE, ERR_FLASH, ERR_TRANSFER, ERR_SIZE = 1, 2, 3, 4, 5
SINGLE_KEYS = frozenset("if")  # stock keys we serve (`w`, Wi-Fi credentials, is not modelled)

# Stock firmware texts (device-side-flashing.md §5, ymodem.md §6).
ID_TEXT = "Your core id is "
FW_PROMPT = "Waiting for the binary file to be sent ... (press 'a' to abort)"
FW_TOO_BIG = "The file size is higher than the allowed space memory!"
FW_DONE = "Downloaded file successfully!"
FW_FAILED = "Failed to receive the file!"
FW_RESTART = "Restarting system to apply firmware update..."
FW_NOT_SUPPORTED = "Firmware update using this terminal is not supported!"


# -- requests (device side) ---------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    """A stock single-key command: 'i' or 'f'."""

    key: str


@dataclass(frozen=True)
class Identify:
    """`ID` -> `OK <24 hex digits>`."""


@dataclass(frozen=True)
class Checksum:
    """`SUM <addr> <len>` -> `OK <crc32 8 hex> <sha256 64 hex>` of that range."""

    address: int
    length: int


@dataclass(frozen=True)
class Save:
    """`SAVE <addr> <len> [ANY]` -> `OK`, one YMODEM file, then `OK <len>` or `ERR ...`."""

    address: int
    length: int
    any_area: bool = False


@dataclass(frozen=True)
class BadLine:
    """A line the device cannot parse; answer `ERR <code> <text>`."""

    code: int
    text: str


Request = Key | Identify | Checksum | Save | BadLine


class LineBuffer:
    """Bytes in, CR/LF-stripped ASCII lines out; keeps what follows for the next protocol."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def receive_data(self, data: bytes) -> None:
        self.buf += data

    def next_line(self) -> str | None:
        i = self.buf.find(b"\n")
        if i < 0:
            return None
        line = bytes(self.buf[:i]).rstrip(b"\r")
        del self.buf[: i + 1]
        return line.decode("ascii", "replace")

    def take_rest(self) -> bytes:
        rest = bytes(self.buf)
        self.buf.clear()
        return rest


def _hex(field: str, what: str) -> int:
    if not 1 <= len(field) <= 8 or any(c not in "0123456789abcdefABCDEF" for c in field):
        raise ValueError(f"{what} {field!r} is not 1-8 hex digits")
    return int(field, 16)


def _parse_line(line: str) -> Request:
    words = line.split()
    verb, args = words[0], words[1:]
    try:
        if verb == "ID" and not args:
            return Identify()
        if verb == "SUM" and len(args) == 2:
            return Checksum(_hex(args[0], "address"), _hex(args[1], "length"))
        if verb == "SAVE" and len(args) in (2, 3) and args[2:] in ([], ["ANY"]):
            return Save(_hex(args[0], "address"), _hex(args[1], "length"), args[2:] == ["ANY"])
    except ValueError as e:
        return BadLine(ERR_SYNTAX, str(e))
    return BadLine(ERR_SYNTAX, f"unknown command {line[:32]!r} (ID, SUM addr len, SAVE addr len [ANY])")


class CommandReader:
    """Device side. A stock key acts at once when it starts a line; other lines end at LF."""

    def __init__(self) -> None:
        self._lines = LineBuffer()

    def receive_data(self, data: bytes) -> None:
        self._lines.receive_data(data)

    def next_request(self) -> Request | None:
        buf = self._lines.buf
        while buf:
            c = chr(buf[0])
            if c in "\r\n\0 ":
                del buf[0]
            elif c in SINGLE_KEYS:
                del buf[0]
                return Key(c)
            elif not c.isupper():
                del buf[0]  # stock firmware ignores other keys
            else:
                line = self._lines.next_line()
                if line is None:
                    if len(buf) > MAX_LINE:
                        buf.clear()
                        return BadLine(ERR_SYNTAX, f"line longer than {MAX_LINE} characters")
                    return None
                if len(line) > MAX_LINE:
                    return BadLine(ERR_SYNTAX, f"line longer than {MAX_LINE} characters")
                return _parse_line(line)
        return None

    def take_rest(self) -> bytes:
        """Bytes after the last request (the start of a YMODEM session, say)."""
        return self._lines.take_rest()


def ok(*fields: str) -> bytes:
    return ("OK" + "".join(" " + f for f in fields) + "\r\n").encode()


def err(code: int, text: str) -> bytes:
    return f"ERR {code} {text}\r\n".encode("ascii", "replace")


# -- host side --------------------------------------------------------------------------
def encode_id() -> bytes:
    return b"ID\n"


def _check(address: int, length: int) -> None:
    if not (0 <= address <= 0xFFFFFFFF and 0 <= length <= 0xFFFFFFFF):
        raise LocalProtocolError(f"address 0x{address:x} / length {length} do not fit 32 bits")


def encode_sum(address: int, length: int) -> bytes:
    _check(address, length)
    return f"SUM {address:08x} {length:x}\n".encode()


def encode_save(address: int, length: int, any_area: bool = False) -> bytes:
    _check(address, length)
    return f"SAVE {address:08x} {length:x}{' ANY' if any_area else ''}\n".encode()


@dataclass(frozen=True)
class Reply:
    fields: tuple[str, ...]


class Refused(RemoteProtocolError):
    """The device answered `ERR <code> ...`; `code` tells a range refusal from line noise."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def parse_reply(line: str, context: str) -> Reply:
    """`OK ...` -> Reply; `ERR code text` -> RemoteProtocolError naming `context`."""
    words = line.split()
    if words[:1] == ["OK"]:
        return Reply(tuple(words[1:]))
    if words[:1] == ["ERR"] and len(words) >= 2:
        code = int(words[1]) if words[1].isdigit() else 0
        raise Refused(f"{context}: device refused: {' '.join(words[1:])}", code)
    raise RemoteProtocolError(f"{context}: unexpected reply {line[:80]!r} (is this our firmware in listening mode?)")


def parse_sum(reply: Reply, context: str) -> tuple[int, str]:
    f = reply.fields
    if len(f) != 2 or len(f[0]) != 8 or len(f[1]) != 64:
        raise RemoteProtocolError(f"{context}: malformed SUM reply {' '.join(f)[:80]!r}")
    try:
        return int(f[0], 16), bytes.fromhex(f[1]).hex()
    except ValueError as e:
        raise RemoteProtocolError(f"{context}: malformed SUM reply ({e})") from e


# -- the device's range rule ------------------------------------------------------------
def save_range_error(external: Memory, address: int, length: int, any_area: bool) -> str | None:
    """Where SAVE may write (device-side-flashing.md §4, HAL_FLASH_CheckValidAddressRange):
    exactly the OTA slot start and within it, or inside the user area; with ANY (the host
    vouches for a signed manifest) anywhere in external flash. None if allowed."""
    if length == 0:
        return "empty file"
    if not external.contains(address, length):
        return f"0x{address:08x}+0x{length:x} is outside external flash (0x{external.base:08x}..0x{external.end:08x})"
    if any_area:
        return None
    ota, user = external.area("ota"), external.area("user")
    if address == ota.start and address + length <= ota.end:
        return None
    if user.start <= address and address + length <= user.end:
        return None
    return (f"0x{address:08x}+0x{length:x} is not the OTA slot 0x{ota.start:06x} or inside the user area "
            f"0x{user.start:06x}..0x{user.end:06x}; send ANY if the manifest allows it")
