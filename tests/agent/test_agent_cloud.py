"""The agent's cloud function in C (what a Core registers with Spark.function/variable):
each line command's reply against Python's digests, the 622-byte variable limit,
refusals, and the release record written in "+" pieces."""

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


def calls(exe: Path, where: Path, *args: str) -> list[tuple[int, str]]:
    """Calls of the cloud function in one agent run: (return value, variable text) each."""
    cmd = [str(exe), "--flash", str(where / "ext.bin"), "--internal", str(where / "int.bin")]
    for a in args:
        cmd += ["--cloud", a]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout
    lines = out.split("\n")  # per call: its return value, the text (one line), an empty line
    assert len(lines) == 3 * len(args) + 1 and lines[2::3] == [""] * len(args) and lines[-1] == "", out
    return [(int(rc), text) for rc, text in zip(lines[0::3], lines[1::3], strict=False)]


def call(exe: Path, where: Path, arg: str) -> tuple[int, str]:
    [got] = calls(exe, where, arg)
    return got


@pytest.fixture
def flash(agent_exe: Path, tmp_path: Path) -> Path:
    call(agent_exe, tmp_path, "ID")  # creates the blank flash files
    return tmp_path


def put(where: Path, address: int, data: bytes) -> None:
    with (where / "ext.bin").open("r+b") as f:
        f.seek(address)
        f.write(data)


@pytest.mark.parametrize(("address", "length"), [(0x80000, 0x10000), (0x100123, 5000), (0x80000, 0), (0x80000, 0x180000)])
def test_sum(agent_exe: Path, flash: Path, address: int, length: int) -> None:
    """`SUM a l` is the serial reply without CR LF: what the server's agent_digest parses."""
    put(flash, address, os.urandom(min(length, 0x20000)))
    rc, text = call(agent_exe, flash, f"SUM {address:x} {length:x}")
    data = (flash / "ext.bin").read_bytes()[address : address + length]
    assert (rc, text) == (0, f"OK {zlib.crc32(data):08x} {hashlib.sha256(data).hexdigest()}")


def test_internal_flash_sum(agent_exe: Path, flash: Path) -> None:
    fw = os.urandom(9000)
    with (flash / "int.bin").open("r+b") as f:
        f.seek(0x5000)
        f.write(fw)
    assert call(agent_exe, flash, f"SUM 8005000 {len(fw):x}") == (0, f"OK {zlib.crc32(fw):08x} {hashlib.sha256(fw).hexdigest()}")


@pytest.mark.parametrize(("address", "length"), [(0x80000, 0x3c000), (0x100123, 5000), (0x80fff, 2)])
def test_sums(agent_exe: Path, flash: Path, address: int, length: int) -> None:
    put(flash, address, os.urandom(length))
    rc, text = call(agent_exe, flash, f"SUMS {address:x} {length:x}")
    data = (flash / "ext.bin").read_bytes()[address : address + length]
    pieces = L.sector_pieces(address, length)
    assert rc == 0 and len(text) <= LIMIT
    assert text.split(" ") == ["OK", str(len(pieces)), *(f"{zlib.crc32(data[a - address : a - address + n]):08x}"
                                                        for a, n in pieces)]


def test_sums_larger_than_the_variable_refused(agent_exe: Path, flash: Path) -> None:
    rc, text = call(agent_exe, flash, f"SUMS 80000 {70 * 0x1000:x}")
    assert rc == 2 and text.startswith("ERR 2 "), text


@pytest.mark.parametrize(("arg", "rc"), [("SUM 80000", 1), ("SUM 80000 10 20", 1), ("SUM x 10", 1), ("SUM 123456789 1", 1),
                                         ("", 1), ("  ", 1), ("SUM 1fffff 2", 2), ("SUM 8000000 20001", 2), ("80000 10", 1),
                                         ("SAVE 80000 10", 1), ("SAVE 80000 10 ANY", 1), ("sum 0 1", 1), ("SUM\t0 1", 1)])
def test_refusals(agent_exe: Path, flash: Path, arg: str, rc: int) -> None:
    image = (flash / "ext.bin").read_bytes()
    got, text = call(agent_exe, flash, arg)
    assert got == rc and text.startswith(f"ERR {rc} "), text
    assert (flash / "ext.bin").read_bytes() == image  # a SAVE over the cloud erases nothing


def test_release_record_over_the_function(agent_exe: Path, flash: Path) -> None:
    """REC SET is longer than one argument (< 64 characters): "+" pieces gather it."""
    sha = hashlib.sha256(b"manifest").hexdigest()
    line = f"REC SET example 1.0.0 {sha}"
    pieces = [line[i : i + 62] for i in range(0, len(line), 62)]
    got = calls(agent_exe, flash, "REC", *("+" + p for p in pieces[:-1]), pieces[-1], "REC")
    assert got == [(0, "OK -"), *[(0, "OK")] * (len(pieces) - 1), (0, "OK"), (0, f"OK example 1.0.0 {sha}")]
    assert RR.latest((flash / "ext.bin").read_bytes()[0x3000:0x4000]) == RR.Record("example", "1.0.0", sha)


def test_gathered_line_bounded(agent_exe: Path, flash: Path) -> None:
    """A gathered command is bounded like a serial line (160); over it, it is dropped whole."""
    got = calls(agent_exe, flash, "+" + "R" * 62, "+" + "R" * 62, "+" + "R" * 40, "ID")
    assert got[:2] == [(0, "OK"), (0, "OK")] and got[2][0] == 1 and got[2][1].startswith("ERR 1 line longer")
    assert got[3][0] == 0 and got[3][1].startswith("OK ") and len(got[3][1]) == 27  # nothing of it was kept
