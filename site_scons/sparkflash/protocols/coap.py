"""The RFC 7252 subset the Spark Core speaks inside its AES frames (spark-cloud-protocol.md §5).

Only what the Core needs: 4-byte header, tokens of 0..8 bytes (requests to a Core always
carry exactly one: it reads fixed offsets), options with the 13/14 extended delta/length
forms, and a payload after 0xFF. Pure encode/decode plus the id/token counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkflash.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "CON", "NON", "ACK", "RST",
    "EMPTY", "GET", "POST", "PUT", "CHANGED", "CONTENT", "BAD_REQUEST",
    "URI_PATH", "URI_QUERY", "MAX_AGE",
    "Message", "encode", "decode", "code_str", "MessageIds",
]

CON, NON, ACK, RST = 0, 1, 2, 3
EMPTY, GET, POST, PUT = 0x00, 0x01, 0x02, 0x03
CHANGED, CONTENT, BAD_REQUEST = 0x44, 0x45, 0x80  # 2.04, 2.05, 4.00
URI_PATH, MAX_AGE, URI_QUERY = 11, 14, 15
PAYLOAD_MARKER = 0xFF


def code_str(code: int) -> str:
    """'2.04' style, as logs and errors show it."""
    return f"{code >> 5}.{code & 0x1F:02d}"


@dataclass(frozen=True)
class Message:
    type: int
    code: int
    mid: int
    token: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()
    payload: bytes = b""

    @property
    def path(self) -> str:
        """The first Uri-Path segment ('u', 'c', 'h', ...): how a Core classifies a message."""
        for num, val in self.options:
            if num == URI_PATH:
                return val.decode("latin-1")
        return ""

    def queries(self) -> list[bytes]:
        return [v for n, v in self.options if n == URI_QUERY]


def _ext(value: int) -> tuple[int, bytes]:
    if not 0 <= value < 269 + 0x10000:
        raise LocalProtocolError(f"CoAP option delta/length {value} cannot be encoded (max {268 + 0x10000})")
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, (value - 269).to_bytes(2, "big")


def encode(m: Message) -> bytes:
    if len(m.token) > 8:
        raise LocalProtocolError(f"CoAP token of {len(m.token)} bytes (max 8)")
    out = bytearray([0x40 | (m.type << 4) | len(m.token), m.code])
    out += (m.mid & 0xFFFF).to_bytes(2, "big") + m.token
    last = 0
    for num, val in sorted(m.options, key=lambda o: o[0]):  # stable: repeated options keep order
        dn, dx = _ext(num - last)
        ln, lx = _ext(len(val))
        out += bytes([dn << 4 | ln]) + dx + lx + val
        last = num
    if m.payload:
        out += bytes([PAYLOAD_MARKER]) + m.payload
    return bytes(out)


def _read_ext(nibble: int, raw: bytes, i: int, what: str) -> tuple[int, int]:
    if nibble < 13:
        return nibble, i
    if nibble == 13:
        if i + 1 > len(raw):
            raise RemoteProtocolError(f"CoAP option {what} truncated at byte {i}")
        return raw[i] + 13, i + 1
    if nibble == 14:
        if i + 2 > len(raw):
            raise RemoteProtocolError(f"CoAP option {what} truncated at byte {i}")
        return int.from_bytes(raw[i : i + 2], "big") + 269, i + 2
    raise RemoteProtocolError(f"CoAP option {what} nibble 15 (reserved) at byte {i - 1}")


def decode(raw: bytes) -> Message:
    """Parse one message; RemoteProtocolError names the byte offset of what is wrong."""
    if len(raw) < 4:
        raise RemoteProtocolError(f"CoAP message of {len(raw)} bytes (header needs 4)")
    if raw[0] >> 6 != 1:
        raise RemoteProtocolError(f"CoAP version {raw[0] >> 6} at byte 0 (expected 1)")
    tkl = raw[0] & 0x0F
    if tkl > 8 or 4 + tkl > len(raw):
        raise RemoteProtocolError(f"CoAP token length {tkl} at byte 0 does not fit {len(raw)} bytes")
    mtype, code, mid = (raw[0] >> 4) & 3, raw[1], int.from_bytes(raw[2:4], "big")
    token = raw[4 : 4 + tkl]
    i, num, opts = 4 + tkl, 0, []
    while i < len(raw) and raw[i] != PAYLOAD_MARKER:
        head = raw[i]
        delta, i = _read_ext(head >> 4, raw, i + 1, "delta")
        length, i = _read_ext(head & 0x0F, raw, i, "length")
        if i + length > len(raw):
            raise RemoteProtocolError(f"CoAP option {num + delta} of {length} bytes runs past the end at byte {i}")
        num += delta
        opts.append((num, raw[i : i + length]))
        i += length
    payload = b""
    if i < len(raw):
        payload = raw[i + 1 :]
        if not payload:
            raise RemoteProtocolError(f"CoAP payload marker at byte {i} with no payload")
    return Message(mtype, code, mid, token, tuple(opts), payload)


class MessageIds:
    """Message ids (+1 per message, 16-bit wrap) and 1-byte tokens (255 skipped, as the Node server).

    The first id/token used is the start value + 1, the pre-increment a Core also uses.
    """

    def __init__(self, mid_start: int, token_start: int = 0) -> None:
        self._mid = mid_start & 0xFFFF
        self._token = token_start & 0xFF

    def next_mid(self) -> int:
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def next_token(self) -> bytes:
        self._token = (self._token + 1) % 255
        return bytes([self._token])
