"""Several instances: light devices over `cloud serve` instances behind HAProxy, PostgreSQL between them.

1,000 light devices (fleet.lightcore, one asyncio process: this one) connect through a real
HAProxy to 2 real `sparkflash cloud serve --database postgresql://...` processes; figures:
seconds until all are connected (and until the fleet database says so), the instances'
resident memory per connected idle device (RSS after minus before, over the devices), and
after a SIGKILL of the busier instance, seconds until its devices have reconnected through
HAProxy to the other and handshaken again.

    tools/bench fleet [--devices 1000] [--instances 2] [--rsa-workers 1] [--database postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.cli import main as cli
from sparkflash.fleet import open_store, scenario
from sparkflash.fleet.key_import import import_key_dir
from sparkflash.fleet.lightcore import LightFleet, LightOptions
from sparkflash.fleet.local_services import LocalCluster, LocalPostgres, pg_bindir


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="tools/bench fleet")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--rsa-workers", type=int, default=1, help="per instance (2 instances x 1 = the 2 cores)")
    ap.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp_s:
        tmp = Path(tmp_s)
        pg = None
        if a.database == "postgresql":
            bindir = pg_bindir()
            if bindir is None:
                raise SystemExit("bench fleet: PostgreSQL is not installed (tools/setup installs it)")
            pg = LocalPostgres(bindir, port=54339).start()
            url = pg.create_db("bench")
        else:
            url = f"sqlite:{tmp / 'fleet.db'}"
        key = tmp / "server.der"
        with contextlib.redirect_stdout(io.StringIO()):  # this benchmark's stdout is its JSON
            assert cli(["cloud", "keygen", "--out", str(key)]) == 0
        priv = serialization.load_der_private_key(key.read_bytes(), None)
        assert isinstance(priv, rsa.RSAPrivateKey)
        devices = tmp / "devices"
        cluster = LocalCluster(tmp / "cluster", key, devices, url, n=a.instances, rsa_workers=a.rsa_workers)
        store = open_store(url)
        try:
            cluster.start()  # the instances read the device keys at each handshake
            fleet = LightFleet(priv.public_key(), cluster.address, a.devices, LightOptions(reconnect_s=0.25),
                               key_pool=8, prefix="5a")
            fleet.register(devices)
            import_key_dir(store, devices)
            figures = asyncio.run(_run(cluster, store, fleet))
        finally:
            store.close()
            cluster.stop()
            if pg is not None:
                pg.stop()
    figures.update({"database": a.database, "rsa_workers_per_instance": a.rsa_workers, "cpus": os.cpu_count()})
    return figures


async def _run(cluster: LocalCluster, store: Any, fleet: LightFleet) -> dict[str, Any]:
    try:
        return await scenario.run(cluster, store, fleet)
    finally:
        await fleet.stop()
