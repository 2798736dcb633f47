"""The device agent's line commands over its cloud function (docs/device-agent.md §6).

The function `sfdigest` takes one serial line command (SUM, SUMS, REC, REC SET) as its
argument and leaves the serial reply in the string variable `sfresult`. An argument must
stay below 64 characters (the Core's function-argument buffer; a longer one drops the
connection), so a longer command (REC SET: up to 138 characters) goes in pieces: each
but the last starts with "+" and is kept by the agent for the next call. This is how the
server reads and writes the device's release record: what lets any host refuse a downgrade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparkflash.errors import RemoteProtocolError, VerifyError
from sparkflash.protocols import listening as L

if TYPE_CHECKING:
    from sparkflash.cloud.session import DeviceSession

__all__ = ["PIECE", "agent_line", "read_release_record", "write_release_record"]

PIECE = 62  # characters of a command per call: "+" + 62 < 64


async def agent_line(s: DeviceSession, line: str) -> L.Reply:
    """Run one agent line command through the cloud function; its reply (Refused on `ERR`).

    A session that died between the pieces of a command (a server killed mid REC SET) leaves
    its "+" piece in the agent, which prefixes it to the next command: that call fails as a
    syntax error and consumes the piece, so a syntax refusal is answered by sending the
    command once more."""
    try:
        return await _agent_line(s, line)
    except L.Refused as e:
        if e.code != L.ERR_SYNTAX:
            raise
        return await _agent_line(s, line)


async def _agent_line(s: DeviceSession, line: str) -> L.Reply:
    from sparkflash.cloud.session import AGENT_FUNCTION, AGENT_RESULT

    where = f"device {s.device_id}: agent {line.split(' ', 1)[0]} over the cloud"
    pieces = [line[i : i + PIECE] for i in range(0, len(line), PIECE)] or [""]
    for p in pieces[:-1]:
        rc = await s.call_function(AGENT_FUNCTION, "+" + p)
        if rc != 0:
            raise RemoteProtocolError(f"{where}: a command piece returned {rc}")
    await s.call_function(AGENT_FUNCTION, pieces[-1])  # the return value repeats the text's ERR code
    text = (await s.variable(AGENT_RESULT)).rstrip(b"\x00").decode("ascii", "replace").strip()
    return L.parse_reply(text, where)


async def read_release_record(s: DeviceSession) -> tuple[str, str, str] | None:
    """(name, version, sha256) the device records as its last verified release; None if none."""
    return L.parse_rec(await agent_line(s, "REC"), f"device {s.device_id}: REC over the cloud")


async def write_release_record(s: DeviceSession, name: str, version: str, sha256: str) -> None:
    """REC SET (the agent writes and reads back the record sector), then REC must return it."""
    await agent_line(s, L.encode_rec_set(name, version, sha256).decode("ascii").rstrip("\n"))
    got = await read_release_record(s)
    if got != (name, version, sha256.lower()):
        raise VerifyError(f"device {s.device_id}: release record reads back {got!r} after REC SET")
