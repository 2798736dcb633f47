"""OTA throughput over a modelled link: stop-and-wait vs fast OTA, and many devices at once.

Each device reaches the cloud server through its own shaped TCP link (a loopback proxy
that serialises each direction at the link rate in 1,460-byte segments, as a real link
delivers packets, and adds half the round trip each way). The devices are the REAL Device
OS v0.4.9 protocol code built for the host (tests/peers/ota_harness, from ../shared/peers;
`--device virtual` uses the virtual Core instead). The region is application firmware
(the only thing Device OS stores over the air), so a transfer ends with the device's
reboot and reconnect.

Throughput = region bytes / time of the write phase (UpdateBegin .. UpdateDone
acknowledged, issue #6): the device is described first (deploy's preflight, once per
connection) so its round trip is not counted; "reboot_s" is the rest, until the
reconnect's "OTA flashed" Hello. Both modes run in one process, on one link and device,
with the same bytes.

The aggregate runs deploy `--agg-size` bytes to N devices at once, each on its own link:
"aggregate_over_one_link" = N x bytes / wall time of the whole deployment (Describe, write,
reboot and reconnect of every device) / one link's rate; "cpu_s" splits that run's CPU
time: the cloud server (and the deploy threads), the shaping proxy's thread, the devices.

    tools/bench ota [--size BYTES] [--agg-size BYTES] [--devices 1,10,100] [--rtt S] [--mbit M] [--no-saw]
                    [--device real|virtual]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.boards import load_board
from sparkflash.cloud import CloudServer, DeviceRegistry, ServerThread
from sparkflash.cloud.flasher import CloudFlasher, OtaOptions
from sparkflash.cloud.server import Limits
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import digests
from sparkflash.protocols.cloud_handshake import server_public_der
from sparkflash.protocols.core_keys import generate_device_key
from sparkflash.virtual.core import CoreOptions, VirtualCore

ADDRESS = 0x08005000  # the application firmware: Device OS stores nothing else over the air
FIRMWARE_MAX = 0x1B000
SEGMENT = 1460  # TCP payload of a 1,500-byte packet
ROOT = Path(__file__).resolve().parents[2]


def _cpu(stat: Path) -> float:
    """User + system seconds from a /proc stat file."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ShapedLink:
    """A loopback TCP proxy: every connection gets its own full-duplex link of `rate` B/s and `rtt` s."""

    def __init__(self, target_port: int, rtt: float, rate: float) -> None:
        self.target, self.delay, self.rate = target_port, rtt / 2, rate
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        loop, free = asyncio.get_running_loop(), 0.0
        while data := await r.read(65536):
            for k in range(0, len(data), SEGMENT):  # each segment arrives when its last byte has crossed
                seg = data[k : k + SEGMENT]
                free = max(free, loop.time()) + len(seg) / self.rate
                loop.call_at(free + self.delay, w.write, seg)  # times only grow: order is kept
        # strictly after the last write (call_at runs equal times in no set order: a tie lost the data)
        loop.call_at(max(free, loop.time()) + self.delay + 1e-6, w.close)

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [w, uw]
        await asyncio.gather(self._pump(r, uw), self._pump(ur, w), return_exceptions=True)

    def cpu(self) -> float:
        """CPU seconds of the proxy's thread (Linux /proc)."""
        return _cpu(Path(f"/proc/self/task/{self._tid}/stat"))

    async def _main(self) -> None:
        self._tid = threading.get_native_id()
        self._stop = asyncio.Event()
        srv = await asyncio.start_server(self._conn, "127.0.0.1", 0, backlog=512)
        self.port = srv.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stop.wait()
        srv.close()
        for w in self._writers:
            w.close()
        await asyncio.sleep(0.2)  # let the pumps see EOF and end (no cancelled handlers)

    def start(self) -> ShapedLink:
        self._thread.start()
        self._ready.wait()
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


def _region(data: bytes) -> Region:
    sha, crc = digests(data)
    return Region("bench", "internal", ADDRESS, len(data), sha, crc, tuple(range(ADDRESS, ADDRESS + len(data), 1024)),
                  "firmware")


def _deploy_one(srv: CloudServer, core: Any, data: bytes, fast: bool) -> tuple[float, float]:
    # every run writes: the virtual Core has the agent, which would skip bytes it already holds
    flasher = CloudFlasher(srv, load_board("spark-core"), core.device_id, OtaOptions(allow_fast=fast, skip_unchanged=False))
    region = _region(data)
    all_acked: list[float] = []
    if flasher.preflight([region]):  # Describe (as `deploy` does before any byte): not part of the write
        raise AssertionError(f"device {core.device_id} refuses the region")

    def progress(done: int, total: int) -> None:
        if done == total and not all_acked:
            all_acked.append(time.monotonic())

    t0 = time.monotonic()
    flasher.write_region(region, data, progress)
    t1 = time.monotonic()
    if core.read(ADDRESS, len(data)) != data:  # the device's own flash image, read by us
        raise AssertionError(f"device {core.device_id} holds different bytes")
    acked = all_acked[0] if all_acked else t1  # (a resumed transfer may end without a last progress report)
    return acked - t0, t1 - acked


class _Virtual:
    def __init__(self, c: VirtualCore) -> None:
        self.c, self.device_id = c, c.state.info["device_id"]

    def read(self, address: int, size: int) -> bytes:
        return self.c.state.internal.read(address, size)

    def stop(self) -> None:
        self.c.stop()

    def cpu(self) -> float:
        return 0.0  # a thread of this process: counted in the server's share


class _Real:
    def __init__(self, c: Any) -> None:
        self.c, self.device_id = c, c.device_id

    def read(self, address: int, size: int) -> bytes:
        data: bytes = self.c.internal(address, size)
        return data

    def stop(self) -> None:
        self.c.kill()

    def cpu(self) -> float:
        """The device process's user + system seconds (Linux /proc; its reboots exec in place)."""
        return _cpu(Path(f"/proc/{self.c.proc.pid}/stat"))


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="tools/bench ota")
    ap.add_argument("--size", type=int, default=300 * 1024, help="bytes for the stop-and-wait vs fast comparison")
    ap.add_argument("--agg-size", type=int, default=64 * 1024, help="bytes per device for the aggregate runs")
    ap.add_argument("--devices", default="1,10,100")
    ap.add_argument("--rtt", type=float, default=0.1)
    ap.add_argument("--mbit", type=float, default=1.0)
    ap.add_argument("--no-saw", action="store_true", help="skip the (slow) stop-and-wait run")
    ap.add_argument("--device", choices=["real", "virtual"], default="real",
                    help="the real Device OS code built for the host (default) or the virtual Core")
    a = ap.parse_args(argv)
    a.size = min(a.size, FIRMWARE_MAX)
    rate = a.mbit * 1e6 / 8
    counts = [int(n) for n in a.devices.split(",") if n]
    out: dict[str, Any] = {"link": {"rtt_s": a.rtt, "mbit_s": a.mbit, "bytes_s": rate}, "size": a.size,
                           "device": "Device OS v0.4.9 communication/ (real code, host build)" if a.device == "real"
                           else "virtual Core (os dialect)"}
    with tempfile.TemporaryDirectory(prefix="bench-ota-") as tmp:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        srv = CloudServer(key, DeviceRegistry(Path(tmp) / "devices"), host="127.0.0.1", port=0, admin=None,
                          limits=Limits(per_peer=1000), rsa_workers=os.cpu_count() or 1)
        cores: list[Any] = []
        exe = None
        if a.device == "real":
            sys.path.insert(0, str(ROOT / "tests" / "peers" / "ota_harness"))
            import realcore

            exe = realcore.build("deviceos", Path(tmp) / "harness")
            dkey = generate_device_key()
        with ServerThread(srv):
            link = ShapedLink(srv.port, a.rtt, rate).start()
            try:
                def core(i: int) -> Any:
                    while len(cores) <= i:
                        d = Path(tmp) / f"core{len(cores)}"
                        if exe is not None:
                            rc = realcore.RealCore(exe, d, link.port, dkey, server_public_der(key.public_key()))
                            srv.registry.register(rc.device_id, rc.public_pem)
                            cores.append(_Real(rc.start()))
                        else:
                            c = VirtualCore(d, CoreOptions(endpoints=("cloud",)))
                            c.state.set_server(server_public_der(key.public_key()), "127.0.0.1", link.port)
                            srv.registry.register(c.state.info["device_id"], c.state.device_public_pem())
                            cores.append(_Virtual(c.start()))
                    end = time.monotonic() + 60
                    while cores[i].device_id not in srv.sessions and time.monotonic() < end:
                        time.sleep(0.05)
                    return cores[i]

                data = os.urandom(a.size)
                modes = ["fast"] + ([] if a.no_saw else ["stop_and_wait"])
                for mode in modes:
                    w, v = _deploy_one(srv, core(0), data, mode == "fast")
                    out[mode] = {"write_s": round(w, 3), "reboot_s": round(v, 3), "bytes_s": round(a.size / w),
                                 "link_fraction": round(a.size / w / rate, 3)}
                if "stop_and_wait" in out:
                    out["fast_over_stop_and_wait"] = round(out["fast"]["bytes_s"] / out["stop_and_wait"]["bytes_s"], 1)
                agg_data = os.urandom(a.agg_size)
                out["aggregate"] = {}
                for n in counts:
                    cs = [core(i) for i in range(n)]
                    times: list[float] = []
                    dev0 = sum(c.cpu() for c in cs)
                    own0, link0 = os.times(), link.cpu()
                    t0 = time.monotonic()
                    threads = [threading.Thread(
                        target=lambda c=c, times=times: times.append(_deploy_one(srv, c, agg_data, True)[0])) for c in cs]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    wall = time.monotonic() - t0
                    own1 = os.times()
                    link_cpu = link.cpu() - link0
                    cpu = {"server": round(own1.user - own0.user + own1.system - own0.system - link_cpu, 2),
                           "link_proxy": round(link_cpu, 2), "devices": round(sum(c.cpu() for c in cs) - dev0, 2)}
                    if len(times) != n:
                        raise AssertionError(f"{n - len(times)} of {n} devices failed")
                    out["aggregate"][str(n)] = {"devices": n, "bytes_each": a.agg_size, "wall_s": round(wall, 3),
                                                "aggregate_bytes_s": round(n * a.agg_size / wall),
                                                "aggregate_over_one_link": round(n * a.agg_size / wall / rate, 2),
                                                "per_device_link_fraction": round(a.agg_size / max(times) / rate, 3),
                                                "cpu_s": cpu}
            finally:
                for c in cores:
                    c.stop()
                link.stop()
    return out
