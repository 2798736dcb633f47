"""libFuzzer on the C agent under AddressSanitizer + UBSan: the whole serial side (line
parser, commands, YMODEM behind SAVE and `f`) and the YMODEM receiver alone with its
invariants. CI runs 1,000 cases each; `tools/fuzz` (HYPOTHESIS_PROFILE=fuzz) 10,000."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash import device_agent
from sparkflash.protocols import listening as L
from sparkflash.protocols import ymodem as Y

pytestmark = pytest.mark.fuzz

RUNS = 10_000 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 1_000
FLAGS = ["-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all", "-Wall", "-Wextra", "-Werror"]


def chunked(stream: bytes, mod: int) -> bytes:
    """The harnesses' input form: each chunk is a length byte ((n-1) % mod) and n bytes."""
    out, step = bytearray(), min(mod, 64)
    for i in range(0, len(stream), step):
        part = stream[i : i + step]
        out += bytes([len(part) - 1]) + part
    return bytes(out)


def session(size: int) -> bytes:
    data = bytes(range(256)) * (size // 256 + 1)
    blocks = [Y.encode_block(i + 1, data[o : o + 1024].ljust(1024, b"\x1a")) for i, o in enumerate(range(0, size, 1024))]
    return Y.encode_header("f.bin", size) + b"".join(blocks) + bytes([Y.EOT]) + Y.END_OF_BATCH


SEEDS_LINE = [
    b"i", b"ID\n", b"SUM 00080000 100\n", b"SUMS 00080ff0 2020\n", b"SUM 08005000 1000\n", b"REC\n",
    L.encode_rec_set("example", "1.0.0", "ab" * 32) + b"REC\n", b"SAVE 00001000 10\n", b"X" * 170 + b"\n",
    L.encode_save(0x80123, 2000) + session(2000), b"SAVE 00080000 10 ANY\n" + session(16),
    b"f" + session(1500), L.encode_save(0x80000, 100) + Y.encode_header("f.bin", 101),
]
SEEDS_YMODEM = [session(3000), session(1), Y.END_OF_BATCH, Y.encode_header("x", 5) + b"\x18\x18"]


def build(tool: Callable[[str], str], out: Path, name: str, sources: list[Path]) -> Path:
    clang = tool("clang")
    exe = out / name
    proc = subprocess.run([clang, *FLAGS, f"-I{device_agent.include_dir()}", *map(str, sources), "-o", str(exe)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 and "fuzzer" in proc.stderr and os.environ.get("CI") is None:
        pytest.skip(f"clang cannot link libFuzzer here (apt-get install libclang-rt-14-dev): {proc.stderr[-200:]}")
    assert proc.returncode == 0, proc.stderr
    return exe


@pytest.mark.parametrize("harness", ["fuzz_line", "fuzz_ymodem"])
def test_libfuzzer_finds_nothing(harness: str, tool: Callable[[str], str], tmp_path: Path) -> None:
    host = device_agent.source_dir() / "host"
    src = device_agent.source_dir() / "src"
    if harness == "fuzz_line":
        sources = [*device_agent.portable_sources(), host / "fuzz_hal.c", host / "fuzz_line.c"]
        seeds, mod = SEEDS_LINE, 64
    else:
        sources = [src / "sfa_ymodem.c", src / "sfa_digest.c", host / "fuzz_ymodem.c"]
        seeds, mod = SEEDS_YMODEM, 200
    exe = build(tool, tmp_path, harness, sources)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, s in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(chunked(s, mod))
    proc = subprocess.run([str(exe), f"-runs={RUNS}", "-seed=1", "-max_len=8192", "-timeout=10", str(corpus)],
                          capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done and int(done.group(1)) >= RUNS, proc.stderr[-1000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("leak-*"))
