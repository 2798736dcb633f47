"""Several instances: light devices over `cloud serve` instances behind HAProxy, PostgreSQL between them.

1,000 light devices (fleet.lightcore, one asyncio process: this one) connect through a real
HAProxy to 2 real `sparkflash cloud serve --database postgresql://...` processes; figures:
seconds until all are connected (and until the fleet database says so), the instances'
resident memory per connected idle device (RSS after minus before, over the devices), and
then a signed 64 KiB release (published to the local S3 server, fetched by each instance)
rolled out in three phases (1 % -> 10 % -> 100 %), created through the busier instance's admin
API, that instance SIGKILLed once a tenth of the last phase is done: seconds until every device
has it (acknowledged or verified by the agent's digest), the per-phase start and end, a timeline
of the members' states sampled every 0.2 s (data for a plot), how many deployments resumed and
how many chunks any device was sent twice, and how the killed instance's devices came back.

    tools/bench fleet [--devices 1000] [--instances 2] [--rsa-workers 1] [--database postgresql|sqlite]
                      [--size 65536] [--lease 5] [--no-rollout]
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
    ap.add_argument("--size", type=int, default=64 * 1024, help="bytes of the rolled-out file (default 64 KiB)")
    ap.add_argument("--lease", type=float, default=5.0, help="--instance-lease of the instances (default 5 s)")
    ap.add_argument("--no-rollout", action="store_true", help="only connect, idle and kill (no rollout)")
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
        stack = contextlib.ExitStack()
        extra: tuple[str, ...] = ("--insecure-unsigned",)
        body = None
        if not a.no_rollout:  # a signed release on the local S3 server; each instance fetches and verifies it
            from sparkflash.publish.local_server import LocalS3Process

            s3 = stack.enter_context(LocalS3Process(buckets=["bench"]))
            ref, trust = _publish(tmp, s3.endpoint, a.size)
            extra = ("--trust", str(trust), "--s3-endpoint", s3.endpoint)
            body = {"release": ref, "id": "bench", "phases": [{"percent": 1, "threshold": 1.0},
                                                              {"percent": 10, "threshold": 1.0},
                                                              {"percent": 100, "threshold": 0.99}]}
        # ccl devices with SaveBegin (files) and the agent (digests: each device verifies what it holds)
        fleet = LightFleet(priv.public_key(), ("127.0.0.1", 0), a.devices,
                           LightOptions(dialect="ccl", save_begin=True, agent=True, reconnect_s=0.25), key_pool=8,
                           prefix="5a")
        fleet.register(devices)  # before the instances start: they import the keys (and SaveBegin) at start
        cluster = LocalCluster(tmp / "cluster", key, devices, url, n=a.instances, rsa_workers=a.rsa_workers,
                               lease_s=a.lease, extra=extra)
        store = open_store(url)
        try:
            cluster.start()
            import_key_dir(store, devices)
            for d in fleet.devices:
                d.address = cluster.address
            figures = asyncio.run(_run(cluster, store, fleet, body))
        finally:
            store.close()
            cluster.stop()
            stack.close()
            if pg is not None:
                pg.stop()
    figures.update({"database": a.database, "rsa_workers_per_instance": a.rsa_workers, "cpus": os.cpu_count()})
    return figures


def _publish(tmp: Path, endpoint: str, size: int) -> tuple[str, Path]:
    """One file of `size` random bytes at 0x80000, built, signed and published: (its s3:// reference, the
    public key to trust)."""
    from sparkflash.manifest.build import build_release
    from sparkflash.manifest.keys import generate_key, load_signer
    from sparkflash.manifest.release import sign_manifest

    src = tmp / "release-src"
    src.mkdir()
    (src / "blob.bin").write_bytes(os.urandom(size))
    (src / "release.yaml").write_text('name: bench\nversion: "1.0.0"\nboard: spark-core\nregions:\n'
                                      "  - name: blob\n    memory: external\n    address: 0x80000\n"
                                      "    source: {file: blob.bin}\n")
    built = build_release(src / "release.yaml", tmp / "release")
    generate_key(tmp / "keys" / "release.pem")
    sign_manifest(built.manifest_path, load_signer(tmp / "keys" / "release.pem"))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = cli(["publish", str(tmp / "release"), "s3://bench/fleet", "--key", str(tmp / "keys" / "release.pem"),
                  "--endpoint-url", endpoint])
    if rc != 0:
        raise SystemExit(f"bench fleet: publishing the release failed (exit {rc})")
    return "s3://bench/fleet/releases/bench/1.0.0", tmp / "keys" / "release.pub.pem"


async def _run(cluster: LocalCluster, store: Any, fleet: LightFleet, body: dict[str, Any] | None) -> dict[str, Any]:
    try:
        return await scenario.run(cluster, store, fleet, rollout=body)
    finally:
        await fleet.stop()
