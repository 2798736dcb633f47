"""`sparkflash deploy|flash --via serial` against the host-built C agent on a pty."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sfa_harness import HostAgent, ask

from sparkflash.cli import main
from sparkflash.manifest.keys import TrustStore
from sparkflash.manifest.release import open_release
from sparkflash.protocols import listening as L

SECTOR = 0x1000


def sum_of(port: str, address: int, data: bytes) -> None:
    import hashlib
    import zlib

    got = ask(port, L.encode_sum(address, len(data)))
    assert got == f"OK {zlib.crc32(data):08x} {hashlib.sha256(data).hexdigest()}", hex(address)


def test_example_release_and_an_unaligned_file(host_agent: HostAgent, signed_example: tuple[Path, Path],
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest, pub = signed_example
    port = host_agent.port
    # Neighbours of the unaligned file, in the sectors it shares with them.
    lo, n = 0x140123, 5000
    first, last = lo & ~(SECTOR - 1), (lo + n - 1) & ~(SECTOR - 1)
    before = os.urandom(lo - first)
    after = os.urandom(last + SECTOR - (lo + n))
    host_agent.write_external(first, before)
    host_agent.write_external(lo + n, after)

    rc = main(["deploy", str(manifest), "--via", "serial", "--port", port, "--trust", str(pub), "--json"])
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 0, events[-1]
    rel = open_release(manifest, TrustStore.from_paths([pub]))
    done = [e for e in events if e["event"] == "region-done"]
    assert [(e["region"], e["status"]) for e in done] == [(r.name, "verified") for r in rel.manifest.regions]
    for r in rel.manifest.regions:
        blob = rel.blob(r)
        read = host_agent.read_internal if r.memory == "internal" else host_agent.read_external
        got = read(r.address, r.size)
        assert got == blob, r.name
        sum_of(port, r.address, blob)  # the device's own digest, asked again

    data = os.urandom(n)
    (tmp_path / "odd.bin").write_bytes(data)
    rc = main(["flash", str(tmp_path / "odd.bin"), "--address", hex(lo), "--via", "serial", "--port", port, "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert host_agent.read_external(lo, n) == data
    assert host_agent.read_external(first, lo - first) == before
    assert host_agent.read_external(lo + n, len(after)) == after
    sum_of(port, lo, data)
    # Everything else in the chip is what the deploy put there (nothing else was erased).
    for r in rel.manifest.regions:
        if r.memory == "external":
            assert host_agent.read_external(r.address, r.size) == rel.blob(r), r.name


def test_protected_save_refused_with_nothing_erased(host_agent: HostAgent) -> None:
    keys = os.urandom(0x2000)
    host_agent.write_external(0x1000, keys)
    factory = os.urandom(SECTOR)
    host_agent.write_external(0x20000, factory)
    image = host_agent.ext.read_bytes()
    for line in (b"SAVE 00001000 100\n", b"SAVE 00002000 10\n", b"SAVE 00020000 1000\n", b"SAVE 00000000 10 ANY\n",
                 b"SAVE 00070000 10\n", b"SAVE 001ff000 2000 ANY\n", b"SAVE 00080000 0\n"):
        assert ask(host_agent.port, line).startswith("ERR 2 "), line
    assert host_agent.ext.read_bytes() == image


def test_weak_cell_recovered_by_read_back_and_retry(start_agent: Callable[..., HostAgent]) -> None:
    agent = start_agent(env={"SFA_HOST_BAD_PROGRAM": "3"})
    neighbour = os.urandom(0x123)
    agent.write_external(0x90000, neighbour)
    data = os.urandom(3000)
    from sparkflash.boards import load_board
    from sparkflash.deploy.serial_ymodem import SerialFlasher
    from sparkflash.manifest.model import Region
    from sparkflash.manifest.release import digests

    board = load_board("spark-core")
    sha, crc = digests(data)
    region = Region("odd", "external", 0x90123, len(data), sha, crc,
                    tuple(board.memory("external").sectors(0x90123, len(data))))
    flasher = SerialFlasher(agent.port, board, timeout=5.0)
    try:
        flasher.write_region(region, data, lambda done, total: None)
        assert flasher.device_digest(region) == (crc, sha)
    finally:
        flasher.close()
    assert agent.read_external(0x90123, len(data)) == data
    assert agent.read_external(0x90000, 0x123) == neighbour
    assert "weak cell at 0x" in agent.stop()  # the fault did happen
