"""Sender rules for the stock receivers (#19 point 3) and the honest status contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparkflash.cli import main
from sparkflash.deploy.base import (
    DEFAULT_ACCEPTED,
    DeployResult,
    RegionResult,
    Unverifiable,
)
from sparkflash.protocols import ymodem as Y
from sparkflash.virtual.core import VirtualCore


def test_header_wait_covers_the_worst_case_erase() -> None:
    assert Y.header_wait_s(0x180000, 0x1000, 0.025) == pytest.approx(10 + 1.25 * 384 * 0.025)
    assert Y.header_wait_s(1, 0x1000, 0.025) == pytest.approx(10 + 1.25 * 0.025)


def test_names_are_cut_under_256() -> None:
    block = Y.encode_header("n" * 300, 5)
    name, size = Y.parse_header(block[3:-2])
    assert (len(name), size) == (Y.MAX_NAME, 5) and Y.MAX_NAME < 256


@pytest.mark.parametrize("size,padded", [(1, 128), (896, 896), (897, 1024), (1024, 1024), (10_000, 10_112)])
def test_padding_the_stock_receiver_writes(size: int, padded: int) -> None:
    assert Y.padded_size(size) == padded


def test_lost_ack_duplicate_nak_moves_on() -> None:
    """A block resent after a silence and NAKed (a Spark receiver's answer to a duplicate)
    counts as delivered; a NAK of a first send still means resend."""
    s = Y.Sender("f", bytes(2048), wait_for_c=False)
    s.data_to_send()
    s.receive_data(bytes([Y.ACK, Y.CRC_START]))
    s.next_event(), s.next_event()
    first = s.data_to_send()
    assert first[:2] == bytes([Y.STX, 1])
    s.receive_data(bytes([Y.NAK]))  # a real NAK: resend block 1
    s.next_event()
    assert s.data_to_send() == first
    s.on_timeout()  # the ACK got lost: resend after the silence
    assert s.data_to_send() == first
    s.receive_data(bytes([Y.NAK]))  # the device already has it
    ev = s.next_event()
    assert ev == Y.Progress(1024, 2048) and s.data_to_send()[:2] == bytes([Y.STX, 2]) and s.duplicates == 1


def test_empty_file_refused_before_any_byte(serial_core: VirtualCore, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "empty.bin"
    f.write_bytes(b"")
    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    rc = main(["flash", "--via", "serial", "--port", port, "--address", "0x80000", str(f), "--json"])
    assert rc == 2, capsys.readouterr()


def test_status_contract() -> None:
    with pytest.raises(ValueError):
        Unverifiable("verified", "no")
    r = DeployResult("x", "1", "d", "serial", [RegionResult("a", 0, 1, "sent", proves="p")])
    assert r.accepted == DEFAULT_ACCEPTED and not r.ok and r.exit_code == 3
    r.accepted = DEFAULT_ACCEPTED | {"sent"}
    assert r.ok and r.exit_code == 0
    doc = r.to_json()
    assert doc["regions"][0]["proves"] == "p" and json.dumps(doc)
    assert RegionResult("b", 0, 1, "verified").to_json()["proves"].startswith("the device's own digest")
