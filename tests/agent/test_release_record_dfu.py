"""The release record written over serial is readable by DFU UPLOAD of its sector and
decodes to the same record (the format of docs/device-agent.md §5, host side)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sfa_harness import ask

from sparkflash.boards import load_board
from sparkflash.deploy.dfu_session import DfuSession, open_pipes
from sparkflash.errors import InputError, LocalProtocolError
from sparkflash.protocols import listening as L
from sparkflash.protocols import release_record as RR
from sparkflash.virtual.core import CoreOptions, VirtualCore


def test_rec_set_over_serial_read_by_dfu_upload(tmp_path: Path) -> None:
    sha = hashlib.sha256(b"manifest.json").hexdigest()
    area = load_board("spark-core").memory("external").area("release_record")
    with VirtualCore(tmp_path / "core", CoreOptions(dfu_poll=False)) as core:
        port = core.endpoints["serial"].port  # type: ignore[attr-defined]
        assert ask(port, L.encode_rec_set("example", "1.2.3", sha)) == "OK"
        (pipe,) = open_pipes([f"virtual:{core.state.path}"], 0x1D50, 0x607F)
        session = DfuSession(pipe)
        try:
            session.select_alt(1)
            sector = session.read(area.start, area.size)
        finally:
            session.close()
    assert RR.latest(sector) == RR.Record("example", "1.2.3", sha)


def test_record_codec_rules() -> None:
    sha = "ab" * 32
    slot = RR.encode_slot(RR.Record("n", "v", sha))
    assert len(slot) == RR.SLOT and RR.decode_slot(slot) == RR.Record("n", "v", sha)
    for i in range(RR.BODY + 4):  # any flipped bit of the body or CRC invalidates the slot
        bad = bytearray(slot)
        bad[i] ^= 0x10
        assert RR.decode_slot(bytes(bad)) is None, i
    assert RR.latest(b"\xff" * 4096) is None and RR.free_slot(slot * 32) is None
    for name, version, digest in [("", "1", sha), ("a" * 33, "1", sha), ("a b", "1", sha), ("a", "1", sha[:-1]),
                                  ("a", "1", "g" * 64), ("é", "1", sha)]:
        with pytest.raises(InputError):
            RR.check_fields(name, version, digest)
        with pytest.raises(LocalProtocolError):
            L.encode_rec_set(name, version, digest)
    assert L.parse_rec(L.parse_reply("OK -", "REC"), "REC") is None
    assert L.parse_rec(L.parse_reply(f"OK a 1 {sha}", "REC"), "REC") == ("a", "1", sha)
