"""Reconnect storm: N registered devices connect at once; time until every handshake (and Hello) is done.

The devices are an asyncio client in a process of its own (so it does not share the
server's interpreter), on the same cores: each does the whole device side of the handshake
during the storm (RSA-2048 encryption of nonce and id, RSA-1024 decryption of the session
material, the signature check) and the Hello exchange; only loading their keys (8 keys,
shared round robin) happens before the clock starts. The server does all of its work per
connection: RSA on the event loop (--workers 0) or in a pool of worker processes.
"cpu_s" splits the storm's CPU time: the server's main process (event loop), its RSA
workers, and the client, which shows where the cores went.

    tools/bench reconnect [--devices 1000] [--workers 0,2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.cloud import CloudServer, DeviceRegistry, ServerThread
from sparkflash.cloud.server import Limits
from sparkflash.protocols import coap
from sparkflash.protocols.cloud_framing import Opener, Sealer
from sparkflash.protocols.cloud_handshake import (
    NONCE_LEN,
    REPLY_LEN,
    device_hello,
    open_server_reply,
)
from sparkflash.protocols.coap import Message, MessageIds
from sparkflash.protocols.core_keys import generate_device_key

ROOT = Path(__file__).resolve().parents[2]


async def _device(port: int, server_pub: rsa.RSAPublicKey, dev_id: bytes, key: rsa.RSAPrivateKey,
                  sem: asyncio.Semaphore) -> float:
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        nonce = await r.readexactly(NONCE_LEN)
        w.write(device_hello(server_pub, nonce, dev_id, key))
        s = open_server_reply(key, server_pub, await r.readexactly(REPLY_LEN))
        seal = Sealer(s.key, s.iv)
        ids = MessageIds(s.device_mid_start)
        hello = Message(coap.NON, coap.POST, ids.next_mid(), b"", ((coap.URI_PATH, b"h"),), b"\xff\xff\xff\xff\x00\x00\x00\x00")
        w.write(seal.seal(coap.encode(hello)))
        op = Opener(s.key, s.iv)
        while op.next_message() is None:  # the server's Hello
            op.receive_data(await r.read(64))
        done = time.monotonic()
        w.close()
        return done


def _client(spec: Path) -> None:
    """Client mode (its own process): connect every device at once, print the seconds until all are done."""
    import json
    import sys

    from cryptography.hazmat.primitives import serialization

    doc = json.loads(spec.read_text())
    pub = serialization.load_pem_public_key(doc["server"].encode())
    keys = [serialization.load_der_private_key(bytes.fromhex(k), None) for k in doc["keys"]]

    async def main() -> float:
        sem = asyncio.Semaphore(1000)
        t0 = time.monotonic()
        ends = await asyncio.gather(*(_device(doc["port"], pub, bytes.fromhex(i), keys[k], sem)  # type: ignore[arg-type]
                                      for i, k in doc["devices"]))
        return max(ends) - t0

    c0 = time.process_time()
    seconds = asyncio.run(main())
    sys.stdout.write(f"{seconds} {time.process_time() - c0}\n")


def _cpu(pid: int) -> float:
    """User + system seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def run(argv: list[str]) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization

    ap = argparse.ArgumentParser(prog="tools/bench reconnect")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--workers", default="0,2")
    a = ap.parse_args(argv)
    skey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dkeys = [generate_device_key() for _ in range(8)]
    ders = [k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()) for k in dkeys]
    devices = [(os.urandom(12), ders[i % len(ders)]) for i in range(a.devices)]
    out: dict[str, Any] = {"devices": a.devices, "cpus": os.cpu_count()}
    for workers in [int(w) for w in a.workers.split(",")]:
        with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
            reg = DeviceRegistry(Path(tmp) / "devices")
            pems = [k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                    for k in dkeys]
            for n, (dev, _) in enumerate(devices):
                reg.register(dev.hex(), pems[n % len(pems)])
            srv = CloudServer(skey, reg, host="127.0.0.1", port=0, admin=None,
                              limits=Limits(per_peer=a.devices + 10), rsa_workers=workers)
            with ServerThread(srv):
                pem = skey.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                spec = Path(tmp) / "storm.json"
                spec.write_text(json.dumps({"port": srv.port, "server": pem.decode(), "keys": [d.hex() for d in ders],
                                            "devices": [(i.hex(), n % len(ders)) for n, (i, _) in enumerate(devices)]}))
                before = {p: _cpu(p) for p in _children()}
                main0 = os.times()
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "site_scons"), os.environ.get("PYTHONPATH", "")])}
                r = subprocess.run([sys.executable, __file__, str(spec)], capture_output=True, text=True, timeout=300,
                                   check=True, env=env)  # this tree's sparkflash, not whatever the venv points at
                main1 = os.times()
                workers_cpu = sum(_cpu(p) - c for p, c in before.items() if Path(f"/proc/{p}").exists())
                seconds, client_cpu = (float(x) for x in r.stdout.split())
            out[f"rsa_workers_{workers}"] = {
                "all_handshaken_s": round(seconds, 2),
                "cpu_s": {"server_main": round(main1.user - main0.user + main1.system - main0.system, 2),
                          "server_rsa_workers": round(workers_cpu, 2), "client": round(client_cpu, 2)}}
    return out


if __name__ == "__main__":
    _client(Path(sys.argv[1]))
