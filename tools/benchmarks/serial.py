"""tools/bench serial: YMODEM throughput over the virtual Core's pty at a modelled line rate.

Measured side by side in one run, each on a fresh virtual Core whose serial link costs
10 bit times per byte at --baud (default 115200) in both directions:

1. ours: SerialFlasher.write_region (SAVE + YMODEM-1K + result line), flash timing off;
2. ours with the SST25VF016B timing model on too (erase 18 ms / 4 KiB, 5 us/byte);
3. lrzsz `sb --ymodem -k` sending the same file to the same receiver (after our SAVE),
   through socat EXEC pipes (sb's 1 s alarm granularity shows);
4. the real receiver (flasher_additions serialSaveFile, core-firmware 5e41341d6, built for
   the host by tests/peers/serial_harness from ../shared/peers) under the same line model
   and the SST25VF016B's typical timing: our YMODEM sender, and `sb -k`, into it, taking
   turns (--repeat rounds, medians).

Figures: payload bytes per second, and that as a fraction of the line rate (baud / 10
bytes per second). Options: --kib N (default 64), --baud B, --quick (16 KiB).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sparkflash.boards import load_board
from sparkflash.deploy.serial_ymodem import SerialFlasher
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import digests
from sparkflash.protocols import listening as L
from sparkflash.transports.serial_port import open_serial
from sparkflash.virtual.core import CoreOptions, VirtualCore

ADDRESS = 0x80000
ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "peers" / "serial_harness"


def _figures(size: int, seconds: float, baud: int) -> dict[str, Any]:
    rate = size / seconds
    return {"seconds": round(seconds, 3), "bytes_per_s": round(rate), "fraction_of_line_rate": round(rate / (baud / 10), 3)}


def _ours(root: Path, data: bytes, baud: int, timing: bool) -> dict[str, Any]:
    core = VirtualCore(root, CoreOptions(endpoints=("serial",), baud=baud, timing=timing)).start()
    try:
        fl = SerialFlasher(core.endpoints["serial"].port, load_board("spark-core"))  # type: ignore[attr-defined]
        sha, crc = digests(data)
        region = Region("bench", "external", ADDRESS, len(data), sha, crc, ())
        t0 = time.monotonic()
        fl.write_region(region, data, lambda d, t: None)
        seconds = time.monotonic() - t0
        ok = fl.device_digest(region) == (crc, sha)
        fl.close()
    finally:
        core.stop()
    return {**_figures(len(data), seconds, baud), "verified": ok}


def _sb(root: Path, data: bytes, baud: int) -> dict[str, Any]:
    sb, socat = shutil.which("sb"), shutil.which("socat")
    if not sb or not socat:
        return {"skipped": "lrzsz or socat not installed"}
    send = root / "send"
    send.mkdir(parents=True)
    (send / "bench.bin").write_bytes(data)
    core = VirtualCore(root / "core", CoreOptions(endpoints=("serial",), baud=baud)).start()
    try:
        port = core.endpoints["serial"].port  # type: ignore[attr-defined]
        link = open_serial(port)
        link.write(L.encode_save(ADDRESS, len(data)))
        line = b""
        while not line.endswith(b"\n"):  # byte by byte: the receiver's first 'C' stays for sb
            b = link.read(1, 5.0)
            if not b:
                raise SystemExit("bench serial: no reply to SAVE")
            line += b
        link.close()
        t0 = time.monotonic()
        rc = subprocess.run([socat, f"FILE:{port},raw,echo=0", f"EXEC:{sb} --ymodem -k bench.bin,pipes"],
                            cwd=send, capture_output=True, timeout=600).returncode
        seconds = time.monotonic() - t0
        ok = rc == 0 and core.state.external.read(ADDRESS, len(data)) == data
    finally:
        core.stop()
    return {**_figures(len(data), seconds, baud), "verified": ok}


def _one_byte_change(root: Path, kib: int, baud: int) -> dict[str, Any]:
    """#15: a whole region written by serial, then one byte of it changed and deployed again
    (per-sector digests first, one sector sent); the ratio of the two write times."""
    board = load_board("spark-core")
    data = bytearray(os.urandom(kib * 1024))
    core = VirtualCore(root, CoreOptions(endpoints=("serial",), baud=baud)).start()
    try:
        fl = SerialFlasher(core.endpoints["serial"].port, board)  # type: ignore[attr-defined]
        times, sent, ok = [], [], True
        for change in (False, True):
            if change:
                data[len(data) // 2] ^= 1
            sha, crc = digests(bytes(data))
            region = Region("bench", "external", ADDRESS, len(data), sha, crc,
                            tuple(board.memory("external").sectors(ADDRESS, len(data))))
            t0 = time.monotonic()
            rep = fl.write_region(region, bytes(data), lambda d, t: None)
            times.append(time.monotonic() - t0)
            sent.append(rep.bytes_sent)
            ok = ok and fl.device_digest(region) == (crc, sha)
        fl.close()
    finally:
        core.stop()
    return {"kib": kib, "full_s": round(times[0], 3), "one_byte_s": round(times[1], 3),
            "full_over_one_byte": round(times[0] / times[1], 1), "bytes_sent": sent, "verified": ok}


def _real_receiver(root: Path, data: bytes, baud: int, repeat: int) -> dict[str, Any]:
    """Ours vs `sb -k` into the real serialSaveFile receiver, same line model, alternating."""
    import statistics
    import sys

    sys.path.insert(0, str(HARNESS))
    import receiver_build
    from receiver_runner import ERASE_TYP_US, PROGRAM_TYP_US, RealCore

    from sparkflash.protocols import ymodem as Y
    from sparkflash.transports.drive import drive

    peers = receiver_build.peers_dir()
    sb, socat = shutil.which("sb"), shutil.which("socat")
    if peers is None or not sb or not socat:
        return {"skipped": "needs ../shared/peers, lrzsz and socat"}
    exe = receiver_build.build(root / "build", peers)
    send = root / "send"
    send.mkdir(parents=True)
    (send / "bench.bin").write_bytes(data)
    times: dict[str, list[float]] = {"ours": [], "sb_k": []}
    data_bps: dict[str, list[float]] = {"ours": [], "sb_k": []}  # header ACK .. last data ACK
    ok = True
    for i in range(repeat):
        for who in ("ours", "sb_k") if i % 2 == 0 else ("sb_k", "ours"):
            core = RealCore(exe, root / f"core-{i}-{who}", mode="save", address=ADDRESS, baud=baud,
                            erase_us=ERASE_TYP_US, program_us=PROGRAM_TYP_US).start()
            try:
                time.sleep(0.3)
                t0 = time.monotonic()
                if who == "ours":
                    marks: list[float] = []

                    def mark(ev: object, _m: list[float] = marks) -> None:
                        if isinstance(ev, Y.Progress) and ev.done in (0, ev.total):
                            _m.append(time.monotonic())

                    link = open_serial(core.port)
                    link.drain_input()
                    drive(link, Y.Sender("bench.bin", data), mark)
                    link.close()
                    data_bps["ours"].append(len(data) / (marks[-1] - marks[0]))
                else:
                    r = subprocess.run([socat, f"FILE:{core.port},raw,echo=0", f"EXEC:{sb} --ymodem -k -vv bench.bin,pipes"],
                                       cwd=send, capture_output=True, timeout=600, check=False)
                    ok = ok and r.returncode == 0
                    bps = re.search(rb"BPS:(\d+)", r.stderr)  # sb's own figure for its data phase
                    if bps:
                        data_bps["sb_k"].append(float(bps.group(1)))
                times[who].append(time.monotonic() - t0)
                ok = ok and core.external(ADDRESS, len(data)) == data
            finally:
                core.stop()
    out: dict[str, Any] = {k: _figures(len(data), statistics.median(v), baud) for k, v in times.items()}
    for k, v in data_bps.items():
        if v:
            out[k]["data_phase_fraction_of_line_rate"] = round(statistics.median(v) / (baud / 10), 3)
    out["ours_over_sb_k_time"] = round(statistics.median(times["ours"]) / statistics.median(times["sb_k"]), 3)
    out["rounds"] = repeat
    out["byte_identical"] = ok
    return out


def run(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="tools/bench serial")
    p.add_argument("--kib", type=int, default=64)
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=3, help="rounds against the real receiver")
    p.add_argument("--change-kib", type=int, default=1536, help="region size of the one-byte-change figure")
    a = p.parse_args(argv)
    kib = 16 if a.quick else a.kib
    data = os.urandom(kib * 1024)
    with tempfile.TemporaryDirectory(prefix="bench-serial-") as tmp:
        root = Path(tmp)
        return {
            "baud": a.baud,
            "bytes": len(data),
            "line_rate_bytes_per_s": a.baud // 10,
            "ours_link_model": _ours(root / "a", data, a.baud, timing=False),
            "ours_link_and_flash_timing": _ours(root / "b", data, a.baud, timing=True),
            "lrzsz_sb_k_link_model": _sb(root / "c", data, a.baud),
            "one_byte_change": _one_byte_change(root / "e", 64 if a.quick else a.change_kib, a.baud),
            "real_receiver_link_model": _real_receiver(root / "d", data, a.baud, 1 if a.quick else a.repeat),
            "target_fraction": 0.90,
        }
