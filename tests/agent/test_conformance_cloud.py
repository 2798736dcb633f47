"""The cloud function, two devices: the host-built C agent (`--cloud`, its sfa_cloud_call)
and the Python virtual Core's cloud client (what its sfdigest answers over the air), on the
same flash contents. Return values and OK texts must be identical, ERR texts down to their
code (the wording is each device's, as in the serial suite); the C agent is the reference
(docs/device-agent.md §6)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_agent_cloud import calls

from sparkflash.protocols import release_record as RR
from sparkflash.virtual.cloud_client import CloudClient
from sparkflash.virtual.core import CoreOptions, VirtualCore

SHA = hashlib.sha256(b"manifest").hexdigest()
REC_SET = f"REC SET example 1.0.0 {SHA}"
SEQUENCES = [
    ["SUM 80000 1000", "SUM 80123 5000", "SUM 8005000 100", "SUM 0 0"],
    ["SUMS 80000 10000", "SUMS 80fff 2002", f"SUMS 80000 {68 * 0x1000:x}", f"SUMS 80000 {69 * 0x1000:x}"],
    ["REC", "+" + REC_SET[:62], "+" + REC_SET[62:124], REC_SET[124:], "REC"],
    ["REC SET bad/name 1.0.0 " + SHA[:40], "REC SET a b 12", "REC"],
    ["SUM 1fffff 2", "SUM 8000000 20001", "SUM x 1", "SUM 123456789 1", "SUMS 0", "sum 0 1", "SUM\t0 1"],
    ["SAVE 80000 10", "SAVE 80000 10 ANY", "", "   ", "i", "FOO"],
    ["+" + "R" * 62, "+" + "R" * 62, "+" + "R" * 40, "SUM 80000 10"],
]


@pytest.fixture
def virtual(tmp_path: Path) -> Iterator[VirtualCore]:
    core = VirtualCore(tmp_path / "vcore", CoreOptions(endpoints=()))
    yield core
    core.stop()


@pytest.mark.parametrize("sequence", SEQUENCES, ids=[s[0][:12] or "empty" for s in SEQUENCES])
def test_same_replies(sequence: list[str], agent_exe: Path, virtual: VirtualCore, tmp_path: Path) -> None:
    calls(agent_exe, tmp_path, "ID")  # the C agent's blank flash files
    ext, internal = os.urandom(0x50000), os.urandom(0x1000)
    with (tmp_path / "ext.bin").open("r+b") as f:
        f.seek(0x80000)
        f.write(ext)
    with (tmp_path / "int.bin").open("r+b") as f:
        f.seek(0x5000)
        f.write(internal)
    virtual.state.external.write_erased(0x80000, ext)
    virtual.state.internal.write_erased(0x08005000, internal)
    client = CloudClient(virtual)
    theirs = []
    for arg in sequence:
        rc = client._sfdigest(arg)  # what the virtual Core answers to POST /f/sfdigest?arg
        theirs.append((rc, client.result.decode()))
    ours = calls(agent_exe, tmp_path, *sequence)
    assert [(rc, t[:5] if t.startswith("ERR ") else t) for rc, t in ours] == \
        [(rc, t[:5] if t.startswith("ERR ") else t) for rc, t in theirs]
    assert all(not t.startswith("ERR ") or len(t) > 6 for _, t in ours + theirs)  # each says why
    sector = (tmp_path / "ext.bin").read_bytes()[0x3000:0x4000]
    assert sector == virtual.state.external.read(0x3000, 0x1000)  # the record's bytes too
    if REC_SET in "".join(a.lstrip("+") for a in sequence):
        assert RR.latest(sector) == RR.Record("example", "1.0.0", SHA)
