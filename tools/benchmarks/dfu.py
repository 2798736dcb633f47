"""tools/bench dfu: DfuSe write speed on the virtual Core with the Core's real poll timeouts.

Measured side by side in one run, on the same virtual Core (dfu_poll on, so every
command/data block costs the bwPollTimeout the Core announces: 50 ms internal, SPI
20 ms erase / 30 ms else):

1. ours (pointer set once per run, wBlockNum 2,3,4..., read back and verified) versus
   dfu-util's pattern re-implemented on the same host machine (erase every page, then
   Set Address + DNLOAD wBlockNum 2 per chunk, no verify), writing the same bytes over
   different old contents, for SPI and for internal flash;
2. a one-byte change in a 1.5 MiB region (read back, one sector rewritten, verified)
   versus a full write of that region (--no-skip), each followed by the digest read-back.

3. real dfu-util (`dfu-util -D`) against ours, both through libusb and the umockdev bridge
   of `virtual-core --usb` to one virtual Core (256 KiB SPI, 100 KiB internal; ours reads
   every run back, dfu-util does not verify), and the bridge's cost per control transfer
   over the bare socket. Skipped (with the reason) where umockdev/python3-gi are missing.

Options: --spi-kib N (default 256), --internal-kib N (16), --big-kib N (1536),
--usb-spi-kib N (256), --usb-internal-kib N (100), --no-usb, --usb-only (part 3 alone),
--default-timer-slack (part 3's clients without the 1 us timer slack), --quick (128/8/256, 64/16).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from sparkflash.boards import load_board
from sparkflash.deploy.dfu import DfuFlasher, SessionBackend
from sparkflash.deploy.dfu_session import DfuSession, open_pipes
from sparkflash.manifest.model import Region
from sparkflash.protocols.dfuse_device import POLL_MS
from sparkflash.virtual.core import CoreOptions, VirtualCore


def _region(name: str, memory: str, address: int, data: bytes) -> Region:
    return Region(name, memory, address, len(data), hashlib.sha256(data).hexdigest(), zlib.crc32(data), ())


def _dfu_util_pattern(session: DfuSession, address: int, data: bytes, page: int) -> None:
    """dfu-util 0.11 dfuse_dnload_element: erase pass over every page, then per chunk
    Set Address + DNLOAD(wBlockNum 2) + GETSTATUS loop; ABORT at the end."""
    h = session.host
    for a in range(address - address % page, address + len(data), page):
        session.run(h.erase(a))
    for off in range(0, len(data), h.transfer_size):
        session.run(h.set_address(address + off))
        session.run(h.download(2, data[off : off + h.transfer_size], address + off))
    session.run(h.abort())


def _side_by_side(core: VirtualCore, session: DfuSession, memory: str, address: int, kib: int) -> dict[str, Any]:
    board = load_board("spark-core")
    mem = board.memory(memory)
    flash = core.state.internal if memory == "internal" else core.state.external
    data = os.urandom(kib * 1024)
    session.select_alt(mem.dfu_alt)
    out: dict[str, Any] = {"bytes": len(data)}
    for name in ("dfu_util_pattern", "ours"):
        flash.write_erased(address, os.urandom(len(data)))  # different old contents: every sector must change
        t0, w0 = time.monotonic(), session.waited_s
        if name == "ours":
            r = DfuFlasher(SessionBackend(session), board).write_region(_region("b", memory, address, data), data,
                                                                        lambda d, t: None)
            assert r.sectors_erased == len(mem.sectors(address, len(data))), r
        else:
            _dfu_util_pattern(session, address, data, mem.sector_size)
        dt = time.monotonic() - t0
        if flash.read(address, len(data)) != data:
            raise RuntimeError(f"{name}: {memory} flash does not hold the written bytes")
        out[f"{name}_s"] = round(dt, 3)
        out[f"{name}_poll_wait_s"] = round(session.waited_s - w0, 3)
        out[f"{name}_kib_per_s"] = round(len(data) / 1024 / dt, 2)
    out["speedup"] = round(out["dfu_util_pattern_s"] / out["ours_s"], 3)
    return out


def _one_sector(core: VirtualCore, session: DfuSession, kib: int) -> dict[str, Any]:
    board = load_board("spark-core")
    data = bytearray(os.urandom(kib * 1024))
    address = 0x80000
    session.select_alt(board.memory("external").dfu_alt)
    core.state.external.write_erased(address, os.urandom(len(data)))

    def deploy_once(blob: bytes, no_skip: bool) -> tuple[float, Any]:
        region = _region("big", "external", address, blob)
        fl = DfuFlasher(SessionBackend(session), board, no_skip=no_skip)
        t0 = time.monotonic()
        rep = fl.write_region(region, blob, lambda d, t: None)
        crc, sha = fl.device_digest(region)
        dt = time.monotonic() - t0
        if (crc, sha) != (region.crc32, region.sha256):
            raise RuntimeError("read-back digest differs")
        return dt, rep

    full_s, full = deploy_once(bytes(data), no_skip=True)
    data[len(data) // 2 + 1234] ^= 0x5A
    one_s, one = deploy_once(bytes(data), no_skip=False)
    return {"bytes": len(data), "full_write_s": round(full_s, 3), "full_sectors_erased": full.sectors_erased,
            "one_byte_change_s": round(one_s, 3), "one_change_sectors_erased": one.sectors_erased,
            "one_change_sectors_skipped": one.sectors_skipped, "speedup": round(full_s / one_s, 2)}


_OURS_IN_CHILD = """
import json, sys, time, hashlib, zlib
from pathlib import Path
from sparkflash.boards import load_board
from sparkflash.deploy.dfu import DfuFlasher, SessionBackend
from sparkflash.deploy.dfu_session import DfuSession, open_pipes
from sparkflash.manifest.model import Region
import sparkflash.transports.usb_device, usb.core, usb.util  # imports before t0, as above (dfu-util's are links)
memory, address, path = sys.argv[1], int(sys.argv[2], 0), Path(sys.argv[3])
data = path.read_bytes()
board = load_board("spark-core")
slept = [0.0]
def sleep(s):  # what the poll waits really took (the asked-for part is session.waited_s)
    t = time.monotonic(); time.sleep(s); slept[0] += time.monotonic() - t
t0 = time.monotonic()
(pipe,) = open_pipes(["1d50:607f"], 0x1D50, 0x607F)
in_control = [0.0]
control = pipe.control
def timed(req, timeout):
    t = time.monotonic()
    try:
        return control(req, timeout)
    finally:
        in_control[0] += time.monotonic() - t
pipe.control = timed
fl = DfuFlasher(SessionBackend(DfuSession(pipe, sleep=sleep)), board)
r = Region("b", memory, address, len(data), hashlib.sha256(data).hexdigest(), zlib.crc32(data), ())
session = fl.backend.session
fl.write_region(r, data, lambda d, t: None)
assert fl.device_digest(r) == (r.crc32, r.sha256)
dt = time.monotonic() - t0
pipe.control = control
counts, waited = dict(session.counts), session.waited_s
n = 300
t1 = time.monotonic()
for _ in range(n):
    pipe.control(__import__("sparkflash.protocols.dfuse", fromlist=["x"]).ControlRequest(0x80, 6, 0x0100, 0, length=18), 5)
per = (time.monotonic() - t1) / n
pipe.close()
print(json.dumps({"s": dt, "control_s": per, "transfers": sum(counts.values()), "poll_wait_s": waited,
                  "in_control_s": in_control[0], "slept_s": slept[0]}))
"""


def _announced_wait(commands: list[tuple[str, int]], memory: str) -> float:
    """Seconds of bwPollTimeout the Core announced for these commands (each erase, Set Address, block)."""
    erase_ms, other_ms = POLL_MS[memory]
    return sum(erase_ms if kind == "erase" else other_ms for kind, _ in commands) / 1000


def _through_usb(tmp: Path, spi_kib: int, internal_kib: int, *, fine_slack: bool = True) -> dict[str, Any]:
    """Real dfu-util against us, both through libusb and the umockdev bridge to one virtual Core.

    Both clients run with a 1 us timer slack (fine_slack): umockdev's preload library sleeps
    usleep(0) after each forwarded ioctl, 60-90 us with the default 50 us slack, three times per
    control transfer; a real usbfs has no such sleep. Each side gets the same."""
    import subprocess
    import sys

    from sparkflash.protocols.dfuse import ControlRequest
    from sparkflash.virtual.usb_attach import CLIENT_TIMER_SLACK_NS, UsbBridge, bridge_available, fine_timer_slack

    why = bridge_available()
    if why:
        return {"skipped": why}
    core = VirtualCore(tmp / "usb-core", CoreOptions(dfu_poll=True, endpoints=("dfu",))).start()
    out: dict[str, Any] = {"client_timer_slack_ns": CLIENT_TIMER_SLACK_NS if fine_slack else "default"}
    preexec = fine_timer_slack if fine_slack else None
    try:
        with UsbBridge(core.state.path) as bridge:
            # our child imports this same sparkflash (a venv's editable install may point at another checkout)
            here = str(Path(__file__).resolve().parents[2] / "site_scons")
            env = {**os.environ, **bridge.env(), "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
            for memory, address, kib in (("external", 0x100000, spi_kib), ("internal", 0x08005000, internal_kib)):
                flash = core.state.internal if memory == "internal" else core.state.external
                alt = load_board("spark-core").memory(memory).dfu_alt
                data = os.urandom(kib * 1024)
                f = tmp / f"usb-{memory}.bin"
                f.write_bytes(data)
                flash.write_erased(address, os.urandom(len(data)))
                device = core.endpoints["dfu"].device  # the Core's command log: what dfu-util made it wait
                n0, t0 = len(device.commands), time.monotonic()
                subprocess.run(["dfu-util", "-d", "1d50:607f", "-a", str(alt), "-s", f"0x{address:08x}", "-D", str(f)],
                               env=env, check=True, capture_output=True, preexec_fn=preexec)
                dfu_util_s = time.monotonic() - t0
                dfu_util_wait = _announced_wait(core.endpoints["dfu"].device.commands[n0:], memory)
                if flash.read(address, len(data)) != data:
                    raise RuntimeError(f"dfu-util: {memory} flash does not hold the written bytes")
                flash.write_erased(address, os.urandom(len(data)))
                child = subprocess.run([sys.executable, "-c", _OURS_IN_CHILD, memory, hex(address), str(f)], env=env,
                                       check=True, capture_output=True, text=True, preexec_fn=preexec)
                ours = json.loads(child.stdout)
                if flash.read(address, len(data)) != data:
                    raise RuntimeError(f"ours: {memory} flash does not hold the written bytes")
                out[memory] = {"bytes": len(data), "dfu_util_s": round(dfu_util_s, 3), "ours_s": round(ours["s"], 3),
                               "dfu_util_over_ours": round(dfu_util_s / ours["s"], 3),
                               # the poll timeouts the Core announced, which both must let pass: their ratio is
                               # the ceiling of dfu_util_over_ours with a zero-cost link
                               "dfu_util_poll_wait_s": round(dfu_util_wait, 3),
                               "ours_poll_wait_s": round(ours["poll_wait_s"], 3),
                               "poll_wait_ratio": round(dfu_util_wait / ours["poll_wait_s"], 3),
                               "ours_control_transfers": ours["transfers"],
                               "ours_ms_per_transfer_beyond_polls": round(
                                   1000 * (ours["s"] - ours["poll_wait_s"]) / ours["transfers"], 3),
                               # where ours spent it: in control transfers (bridge, Core, libusb), past the
                               # asked-for poll waits (timer and wake-up latency), and in its own Python
                               "ours_ms_per_transfer_in_control": round(1000 * ours["in_control_s"] / ours["transfers"], 3),
                               "ours_poll_overshoot_s": round(ours["slept_s"] - ours["poll_wait_s"], 3),
                               "ours_other_s": round(ours["s"] - ours["in_control_s"] - ours["slept_s"], 3)}
                out["bridge_control_s"] = ours["control_s"]
        # the same standard request straight over the virtual Core's socket: what the bridge adds
        (pipe,) = open_pipes([f"virtual:{core.state.path}"], 0x1D50, 0x607F)
        t1, n = time.monotonic(), 300
        for _ in range(n):
            pipe.control(ControlRequest(0x80, 6, 0x0100, 0, length=18), 5)
        socket_s = (time.monotonic() - t1) / n
        pipe.close()
        out["socket_control_s"] = round(socket_s, 6)
        out["bridge_cost_ms_per_control_transfer"] = round((out["bridge_control_s"] - socket_s) * 1000, 3)
        out["bridge_control_s"] = round(out["bridge_control_s"], 6)
        out["note"] = ("both through libusb + the umockdev bridge (virtual-core --usb), dfu_poll on; ours reads "
                       "every run back and the region digest, dfu-util writes without verifying")
    finally:
        core.stop()
    return out


def run(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="tools/bench dfu")
    p.add_argument("--spi-kib", type=int, default=256)
    p.add_argument("--internal-kib", type=int, default=16)
    p.add_argument("--big-kib", type=int, default=1536)
    p.add_argument("--usb-spi-kib", type=int, default=256)
    p.add_argument("--usb-internal-kib", type=int, default=100)
    p.add_argument("--no-usb", action="store_true", help="skip real dfu-util vs ours through virtual-core --usb")
    p.add_argument("--usb-only", action="store_true", help="only real dfu-util vs ours through virtual-core --usb")
    p.add_argument("--default-timer-slack", action="store_true",
                   help="run both libusb clients with the default timer slack (umockdev's usleep(0) per ioctl ~60-90 us)")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.spi_kib, a.internal_kib, a.big_kib, a.usb_spi_kib, a.usb_internal_kib = 128, 8, 256, 64, 16
    if a.usb_only:
        with tempfile.TemporaryDirectory(prefix="bench-dfu-") as tmp:
            usb = _through_usb(Path(tmp), a.usb_spi_kib, a.usb_internal_kib, fine_slack=not a.default_timer_slack)
        return {"real_dfu_util_usb": usb,
                "targets": {"real_dfu_util_spi>=1.8": usb.get("external", {}).get("dfu_util_over_ours", 0) >= 1.8,
                            "real_dfu_util_internal>=1.45": usb.get("internal", {}).get("dfu_util_over_ours", 0) >= 1.45}}
    with tempfile.TemporaryDirectory(prefix="bench-dfu-") as tmp:
        core = VirtualCore(Path(tmp) / "core", CoreOptions(dfu_poll=True, endpoints=("dfu",))).start()
        try:
            (pipe,) = open_pipes([f"virtual:{core.state.path}"], *core.state.board.usb["dfu"])
            session = DfuSession(pipe)
            try:
                spi = _side_by_side(core, session, "external", 0x100000, a.spi_kib)
                internal = _side_by_side(core, session, "internal", 0x08005000, a.internal_kib)
                big = _one_sector(core, session, a.big_kib)
            finally:
                session.close()
        finally:
            core.stop()
        usb = {"skipped": "--no-usb"} if a.no_usb else _through_usb(Path(tmp), a.usb_spi_kib, a.usb_internal_kib,
                                                                   fine_slack=not a.default_timer_slack)
    return {
        "poll_timeouts": "Core: internal 50 ms; SPI 20 ms erase, 30 ms otherwise (dfu_poll on)",
        "write_spi": spi,
        "write_internal": internal,
        "one_sector_change": big,
        "real_dfu_util_usb": usb,
        "targets": {"write_speedup_spi>=1.8": spi["speedup"] >= 1.8, "one_sector_speedup>=20": big["speedup"] >= 20,
                    "real_dfu_util_spi>=1.8": usb.get("external", {}).get("dfu_util_over_ours", 0) >= 1.8,
                    "real_dfu_util_internal>=1.45": usb.get("internal", {}).get("dfu_util_over_ours", 0) >= 1.45},
    }
