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
from sparkflash.errors import InputError, LocalProtocolError, RemoteProtocolError

__all__ = [
    "AGENT_BANNER",
    "ERR_FLASH",
    "ERR_RANGE",
    "ERR_SIZE",
    "ERR_SYNTAX",
    "ERR_TRANSFER",
    "FW_DONE",
    "FW_FAILED",
    "FW_NOT_SUPPORTED",
    "FW_PROMPT",
    "FW_RESTART",
    "FW_TOO_BIG",
    "ID_TEXT",
    "MAX_LINE",
    "BadLine",
    "Checksum",
    "CommandReader",
    "Identify",
    "Key",
    "LineBuffer",
    "RecordGet",
    "RecordSet",
    "Refused",
    "Reply",
    "Request",
    "Save",
    "SectorSums",
    "encode_id",
    "encode_rec",
    "encode_rec_set",
    "encode_save",
    "encode_sum",
    "encode_sums",
    "err",
    "ok",
    "parse_rec",
    "parse_reply",
    "parse_sum",
    "parse_sums",
    "save_range_error",
    "sector_pieces",
]

# 160, not 80: `REC SET <name 32> <version 32> <sha256 64>` must fit (docs/device-agent.md).
MAX_LINE = 160
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
# The line our agent (and the virtual Core in agent mode) prints right after the `i` line.
AGENT_BANNER = "sparkflash-agent 1"


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
class SectorSums:
    """`SUMS <addr> <len>` -> `OK <n> <crc32> ...`: one CRC-32 per piece cut at 4 KiB boundaries."""

    address: int
    length: int


@dataclass(frozen=True)
class RecordGet:
    """`REC` -> `OK <name> <version> <sha256>` or `OK -`."""


@dataclass(frozen=True)
class RecordSet:
    """`REC SET <name> <version> <sha256>` -> `OK` once written and read back."""

    name: str
    version: str
    sha256: str


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


Request = Key | Identify | Checksum | SectorSums | RecordGet | RecordSet | Save | BadLine


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


def _hex(field: str) -> int | None:
    if not 1 <= len(field) <= 8 or any(c not in "0123456789abcdefABCDEF" for c in field):
        return None
    return int(field, 16)


_UNKNOWN = "unknown command (ID, SUM a l, SUMS a l, SAVE a l [ANY], REC, REC SET n v sha256)"
_NUMBERS = "address and length: 1-8 hex digits"


def _parse_line(raw: bytes) -> Request:
    """One line, by the C agent's rules (it is the reference): printable ASCII, words
    separated by runs of spaces, numbers 1-8 hex digits."""
    if any(b != 0x20 and not 0x21 <= b <= 0x7E for b in raw):
        return BadLine(ERR_SYNTAX, "bad character in the line")
    words = [w for w in raw.decode("ascii").split(" ") if w]
    if not words:
        return BadLine(ERR_SYNTAX, _UNKNOWN)  # not reached: a line starts with a letter
    verb, args = words[0], words[1:]
    if verb == "ID" and not args:
        return Identify()
    if verb in ("SUM", "SUMS") and len(args) == 2:
        a, n = _hex(args[0]), _hex(args[1])
        if a is None or n is None:
            return BadLine(ERR_SYNTAX, _NUMBERS)
        return Checksum(a, n) if verb == "SUM" else SectorSums(a, n)
    if verb == "SAVE" and len(args) in (2, 3) and args[2:] in ([], ["ANY"]):
        a, n = _hex(args[0]), _hex(args[1])
        if a is None or n is None:
            return BadLine(ERR_SYNTAX, _NUMBERS)
        return Save(a, n, args[2:] == ["ANY"])
    if verb == "REC" and not args:
        return RecordGet()
    if verb == "REC" and len(args) == 4 and args[0] == "SET":
        from sparkflash.protocols.release_record import check_fields

        try:
            rec = check_fields(args[1], args[2], args[3])
        except InputError as e:
            return BadLine(ERR_SYNTAX, str(e))
        return RecordSet(rec.name, rec.version, rec.sha256)
    return BadLine(ERR_SYNTAX, _UNKNOWN)


_TOO_LONG = f"line longer than {MAX_LINE} characters"


class CommandReader:
    """Device side, byte by byte as the C agent reads: a stock key acts at once when it
    starts a line; other lines start with an upper-case letter and end at LF (trailing CRs
    dropped); a line over MAX_LINE is skipped to its LF and answered once with ERR 1."""

    def __init__(self) -> None:
        self._lines = LineBuffer()
        self._line = bytearray()
        self._discard = False

    def receive_data(self, data: bytes) -> None:
        self._lines.receive_data(data)

    def next_request(self) -> Request | None:
        buf = self._lines.buf
        while buf:
            b = buf[0]
            del buf[0]
            if self._discard:
                if b == 0x0A:
                    self._discard = False
                    return BadLine(ERR_SYNTAX, _TOO_LONG)
            elif not self._line:
                if chr(b) in SINGLE_KEYS:
                    return Key(chr(b))
                if 0x41 <= b <= 0x5A:
                    self._line.append(b)
                # CR, LF, NUL, space and other keys are ignored, as stock firmware does
            elif b == 0x0A:
                line = bytes(self._line).rstrip(b"\r")
                self._line.clear()
                return BadLine(ERR_SYNTAX, _TOO_LONG) if len(line) > MAX_LINE else _parse_line(line)
            elif len(self._line) < MAX_LINE + 1:
                self._line.append(b)
            else:
                self._line.clear()
                self._discard = True
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


def encode_sums(address: int, length: int) -> bytes:
    _check(address, length)
    return f"SUMS {address:08x} {length:x}\n".encode()


def encode_rec() -> bytes:
    return b"REC\n"


def encode_rec_set(name: str, version: str, sha256: str) -> bytes:
    """REC SET line; LocalProtocolError if a field breaks the record's rules."""
    from sparkflash.protocols.release_record import check_fields

    try:
        rec = check_fields(name, version, sha256)
    except InputError as e:
        raise LocalProtocolError(str(e)) from None
    return f"REC SET {rec.name} {rec.version} {rec.sha256}\n".encode()


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


def sector_pieces(address: int, length: int, sector: int = 0x1000) -> list[tuple[int, int]]:
    """[(address, length)] of a range cut at sector boundaries (what SUMS reports)."""
    out, a, end = [], address, address + length
    while a < end:
        n = min(end, (a // sector + 1) * sector) - a
        out.append((a, n))
        a += n
    return out


def parse_sums(reply: Reply, address: int, length: int, context: str) -> list[int]:
    """The CRC-32 of each piece of sector_pieces(address, length), from `OK <n> <crc> ...`."""
    f, want = reply.fields, len(sector_pieces(address, length))
    if not f or f[0] != str(want) or len(f) != want + 1 or any(len(c) != 8 for c in f[1:]):
        raise RemoteProtocolError(f"{context}: malformed SUMS reply {' '.join(f)[:80]!r} ({want} pieces expected)")
    try:
        return [int(c, 16) for c in f[1:]]
    except ValueError as e:
        raise RemoteProtocolError(f"{context}: malformed SUMS reply ({e})") from e


def parse_rec(reply: Reply, context: str) -> tuple[str, str, str] | None:
    """(name, version, sha256) from `OK <name> <version> <sha256>`; None for `OK -`."""
    from sparkflash.protocols.release_record import check_fields

    if reply.fields == ("-",):
        return None
    if len(reply.fields) != 3:
        raise RemoteProtocolError(f"{context}: malformed REC reply {' '.join(reply.fields)[:80]!r}")
    try:
        rec = check_fields(*reply.fields)
    except InputError as e:
        raise RemoteProtocolError(f"{context}: malformed REC reply ({e})") from None
    return rec.name, rec.version, rec.sha256


# -- the device's range rule ------------------------------------------------------------
def save_range_error(external: Memory, address: int, length: int, any_area: bool) -> str | None:
    """Where SAVE may write (device-side-flashing.md §4, HAL_FLASH_CheckValidAddressRange):
    exactly the OTA slot start and within it, or inside the user area; with ANY (the host
    vouches for a signed manifest) anywhere in external flash but the scratch sector 0 the
    agent merges partly covered sectors through. None if allowed."""
    if length == 0:
        return "empty file"
    if not external.contains(address, length):
        return f"0x{address:08x}+0x{length:x} is outside external flash (0x{external.base:08x}..0x{external.end:08x})"
    scratch = external.area("scratch")
    if address < scratch.end:
        return f"0x{address:08x}: sector 0x{scratch.start:06x} is the device agent's scratch sector"
    if any_area:
        return None
    ota, user = external.area("ota"), external.area("user")
    if address == ota.start and address + length <= ota.end:
        return None
    if user.start <= address and address + length <= user.end:
        return None
    return (f"0x{address:08x}+0x{length:x} is not the OTA slot 0x{ota.start:06x} or inside the user area "
            f"0x{user.start:06x}..0x{user.end:06x}; send ANY if the manifest allows it")
