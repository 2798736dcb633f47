"""tools/bench parallel: 4 devices deployed at once vs one device (#15 point 5, goal <= 1.2x).

Each virtual Core runs in its own process (`sparkflash virtual-core`, as separate boards
would), DFU with the Core's real poll timeouts, serial with the 115200-baud line model.
A release (a 16 KiB firmware and a 64 KiB external file; serial: the file only, fresh random
bytes per run so nothing can be skipped) is deployed once to one Core, then to four at once through one
`sparkflash deploy` with four --device / --port values; figures: wall time of each and
the ratio four / one.

Options: --kib N (external file size, default 64), --via dfu,serial.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _release(tmp: Path, kib: int, tag: str) -> Path:
    """Fresh random contents per run: every sector differs on every Core (no run profits from skipping)."""
    from sparkflash.boards import load_board
    from sparkflash.manifest.model import Manifest, Region
    from sparkflash.manifest.release import digests, store_blob

    board = load_board("spark-core")
    fw = struct.pack("<II", 0x20005000, 0x08005131) + os.urandom(16 * 1024 - 8)
    ext = os.urandom(kib * 1024)
    store = tmp / f"release-{tag}"
    regions = []
    for name, mem, addr, data, kind in (("firmware", "internal", 0x08005000, fw, "firmware"),
                                        ("file", "external", 0x80000, ext, "data")):
        sha, crc = digests(data)
        store_blob(store, data)
        m = board.memory(mem)
        regions.append(Region(name, mem, addr, len(data), sha, crc, tuple(m.sectors(addr, len(data))), kind))
    man = Manifest("bench-parallel", "1.0.0", board.name, tuple(regions))
    (store / "manifest.json").write_bytes(man.canonical())
    return store / "manifest.json"


def _start_cores(tmp: Path, n: int) -> list[tuple[subprocess.Popen[str], Path, str]]:
    out = []
    for i in range(n):
        state = tmp / f"core{i}"
        p = subprocess.Popen([sys.executable, "-m", "sparkflash", "virtual-core", "--state", str(state), "--json",
                              "--baud", "115200"], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        info = json.loads(p.stdout.readline())
        out.append((p, state, str(info["serial"])))
    return out


def _deploy(manifest: Path, via: str, targets: list[str]) -> float:
    flag = "--device" if via == "dfu" else "--port"
    argv = [sys.executable, "-m", "sparkflash", "deploy", str(manifest), "--no-verify-signature", "--via", via,
            "--json", *(["--no-skip"] if via == "dfu" else [])]
    for t in targets:
        argv += [flag, t]
    if via == "serial":
        argv += ["--memory", "external"]  # firmware by serial resets the Core (stock `f`): files only
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    dt = time.monotonic() - t0
    result = json.loads(p.stdout.splitlines()[-1])
    if p.returncode != 0 or not result["ok"]:
        raise SystemExit(f"bench parallel: deploy failed ({p.returncode}): {p.stderr[-500:]}")
    return dt


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="tools/bench parallel")
    ap.add_argument("--kib", type=int, default=64)
    ap.add_argument("--via", default="dfu,serial")
    a = ap.parse_args(argv)
    out: dict[str, Any] = {"devices": 4, "kib": a.kib}
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp_s:
        tmp = Path(tmp_s)
        cores = _start_cores(tmp, 4)
        try:
            for via in [v for v in a.via.split(",") if v]:
                targets = [f"virtual:{s}" if via == "dfu" else tty for _, s, tty in cores]
                one = _deploy(_release(tmp, a.kib, f"{via}-1"), via, targets[:1])
                four = _deploy(_release(tmp, a.kib, f"{via}-4"), via, targets)
                out[via] = {"one_s": round(one, 3), "four_s": round(four, 3), "four_over_one": round(four / one, 3)}
        finally:
            for p, _, _ in cores:
                p.terminate()
                p.wait(10)
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "site_scons"))
    print(json.dumps(run(sys.argv[1:]), indent=2))
