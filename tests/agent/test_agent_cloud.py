"""The agent's cloud function in C (what a Core registers with Spark.function/variable):
the text of `addr len` against Python's digests, the 622-byte variable limit, refusals."""

from __future__ import annotations

import hashlib
import os
import subprocess
import zlib
from pathlib import Path

import pytest

from sparkflash.protocols import listening as L
from sparkflash.protocols import release_record as RR

LIMIT = 622


def call(exe: Path, where: Path, arg: str) -> tuple[int, str]:
    proc = subprocess.run([str(exe), "--flash", str(where / "ext.bin"), "--internal", str(where / "int.bin"),
                           "--cloud", arg], capture_output=True, text=True, check=True, timeout=30)
    rc, _, text = proc.stdout.partition("\n")
    return int(rc), text.removesuffix("\n")


@pytest.fixture
def flash(agent_exe: Path, tmp_path: Path) -> Path:
    call(agent_exe, tmp_path, "0 0")  # creates the blank flash files
    return tmp_path


def put(where: Path, address: int, data: bytes) -> None:
    with (where / "ext.bin").open("r+b") as f:
        f.seek(address)
        f.write(data)


@pytest.mark.parametrize(("address", "length"), [(0x80000, 0x10000), (0x100123, 5000), (0x80000, 0), (0x80000, 0x180000)])
def test_digest_text(agent_exe: Path, flash: Path, address: int, length: int) -> None:
    put(flash, address, os.urandom(min(length, 0x20000)))
    sha = hashlib.sha256(b"release").hexdigest()
    put(flash, 0x3000, RR.encode_slot(RR.Record("example", "1.0.0", sha)))
    rc, text = call(agent_exe, flash, f"{address:x} {length:x}")
    data = (flash / "ext.bin").read_bytes()[address : address + length]
    assert rc == 0 and len(text) <= LIMIT, text
    sum_line, rec_line, sums_line = text.split("\n")
    assert sum_line == f"SUM {zlib.crc32(data):08x} {hashlib.sha256(data).hexdigest()}"
    assert rec_line == f"REC example 1.0.0 {sha}"
    words = sums_line.split(" ")
    pieces = L.sector_pieces(address, length)
    assert words[0] == "SUMS" and int(words[1]) == len(pieces)
    shown = int(words[2])
    assert shown == len(words) - 3 and (shown == len(pieces) or len(text) + 9 > LIMIT)
    assert words[3:] == [f"{zlib.crc32(data[a - address : a - address + n]):08x}" for a, n in pieces[:shown]]


@pytest.mark.parametrize(("arg", "rc"), [("80000", 1), ("80000 10 20", 1), ("x 10", 1), ("123456789 1", 1),
                                         ("", 1), ("1fffff 2", 2), ("8000000 20001", 2), ("80000 " + "0" * 60, 1)])
def test_refusals(agent_exe: Path, flash: Path, arg: str, rc: int) -> None:
    got, text = call(agent_exe, flash, arg)
    assert got == rc and text.startswith(f"ERR {rc} "), text


def test_empty_record(agent_exe: Path, flash: Path) -> None:
    rc, text = call(agent_exe, flash, "80000 10")
    assert rc == 0 and text.split("\n")[1] == "REC -"
