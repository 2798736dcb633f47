"""The cloud server treats everything from outside as hostile: admin API and device port."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.cloud import CloudServer, DeviceRegistry, ServerThread
from sparkflash.cloud.server import Limits, load_or_create_token
from sparkflash.deploy.ota import AdminClient
from sparkflash.errors import InputError, VerifyError
from sparkflash.manifest.keys import TrustStore, generate_key, load_signer
from sparkflash.manifest.release import Signature
from sparkflash.protocols import ota
from sparkflash.protocols.cloud_handshake import NONCE_LEN, device_hello
from sparkflash.protocols.coap import MessageIds


def raw(cloud: CloudServer, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
        timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    assert cloud.admin_addr is not None
    c = http.client.HTTPConnection(*cloud.admin_addr[:2], timeout=timeout)
    try:
        c.request(method, path, body=body or None, headers=headers or {})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        c.close()


def auth(cloud: CloudServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {cloud.token}", "Content-Type": "application/json"}


def test_admin_api_needs_the_token(cloud: CloudServer) -> None:
    assert raw(cloud, "GET", "/v1/devices")[0] == 401
    assert raw(cloud, "GET", "/v1/devices", headers={"Authorization": "Bearer " + "x" * 43})[0] == 401
    assert raw(cloud, "GET", "/v1/devices", headers=auth(cloud))[0] == 200


def test_text_plain_post_refused(cloud: CloudServer) -> None:
    """What a browser may send cross-site without a preflight: refused, nothing created."""
    body = json.dumps({"manifest_json": "{}", "devices": ["00" * 12]}).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, doc = raw(cloud, "POST", "/v1/deployments", body, {"Authorization": f"Bearer {cloud.token}",
                                                                   "Content-Type": ctype})
        assert status == 415, doc
    assert not cloud.deployments


def test_token_file_created_0600(tmp_path: Path) -> None:
    p = tmp_path / "server.der.admin-token"
    t = load_or_create_token(p)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600 and len(t) >= 32
    assert load_or_create_token(p) == t


@pytest.fixture
def trusted_cloud(server_key: rsa.RSAPrivateKey, tmp_path: Path) -> Iterator[tuple[CloudServer, Path]]:
    """A server as `cloud serve --trust KEY` runs it (no insecure flag); the signing key's path."""
    pub, _ = generate_key(tmp_path / "keys" / "release.pem")
    srv = CloudServer(server_key, DeviceRegistry(tmp_path / "devices"), host="127.0.0.1", port=0,
                      admin=("127.0.0.1", 0), trust=TrustStore.from_paths([pub]))
    with ServerThread(srv):
        yield srv, tmp_path / "keys" / "release.pem"


def test_unsigned_manifest_json_refused_by_default(trusted_cloud: tuple[CloudServer, Path],
                                                   make_release: Callable[..., Any], tmp_path: Path) -> None:
    srv, key = trusted_cloud
    rel = make_release(tmp_path / "store", [("file", 0x80000, b"x" * 100)])
    c = AdminClient("http://{}:{}".format(*srv.admin_addr[:2]), srv.token)  # type: ignore[index]
    body: dict[str, Any] = {"manifest_json": rel.raw.decode(), "devices": ["00" * 12]}
    with pytest.raises(VerifyError, match="unsigned"):
        c.call("POST", "/v1/deployments", body)
    forged = Signature("0" * 64, b"\0" * 64).to_bytes().decode()
    with pytest.raises(VerifyError, match="unknown key"):
        c.call("POST", "/v1/deployments", {**body, "signature_json": forged})
    signer = load_signer(key)
    good = Signature(signer.key_id, signer.sign(rel.raw)).to_bytes().decode()
    with pytest.raises(InputError, match="not in the server's store"):  # signature fine; blob not uploaded
        c.call("POST", "/v1/deployments", {**body, "signature_json": good})
    assert not srv.deployments


def test_server_without_trust_store_deploys_nothing(server_key: rsa.RSAPrivateKey, tmp_path: Path,
                                                    make_release: Callable[..., Any]) -> None:
    srv = CloudServer(server_key, DeviceRegistry(tmp_path / "devices"), host="127.0.0.1", port=0, admin=("127.0.0.1", 0))
    rel = make_release(tmp_path / "store", [("file", 0x80000, b"x" * 100)])
    with ServerThread(srv):
        c = AdminClient("http://{}:{}".format(*srv.admin_addr[:2]), srv.token)  # type: ignore[index]
        with pytest.raises(VerifyError, match="no trust store"):
            c.call("POST", "/v1/deployments", {"manifest_json": rel.raw.decode(), "devices": ["00" * 12]})


@pytest.mark.parametrize("what", ["fifo", "/dev/zero", "/dev/tty", "dir-with-fifo"])
def test_fifo_and_device_paths_refused_at_once(what: str, cloud: CloudServer, tmp_path: Path) -> None:
    if what == "fifo":
        target = tmp_path / "manifest.json"
        os.mkfifo(target)
    elif what == "dir-with-fifo":
        target = tmp_path / "rel"
        target.mkdir()
        os.mkfifo(target / "manifest.json")
    else:
        target = Path(what)
    body = json.dumps({"manifest": str(target), "devices": ["00" * 12]}).encode()
    t0 = time.monotonic()
    status, doc = raw(cloud, "POST", "/v1/deployments", body, auth(cloud), timeout=5)
    assert status == 400 and ("not a regular file" in doc["error"] or "No such" in doc["error"]
                              or "No such device" in doc["error"]), doc
    assert time.monotonic() - t0 < 5  # (the request's own timeout: a blocked server would not answer)
    assert raw(cloud, "GET", "/v1/devices", headers=auth(cloud))[0] == 200  # still answering


def test_non_hex_digest_never_reads_a_path(cloud: CloudServer, make_release: Callable[..., Any], tmp_path: Path) -> None:
    rel = make_release(tmp_path / "store", [("file", 0x80000, b"x" * 100)])
    import dataclasses

    m = rel.manifest
    bad = dataclasses.replace(m, regions=(dataclasses.replace(m.regions[0], sha256="../../../../etc/passwd"),))
    body = json.dumps({"manifest_json": bad.canonical().decode(), "devices": ["00" * 12]}).encode()
    status, reply = raw(cloud, "POST", "/v1/deployments", body, auth(cloud))
    assert status == 400 and "sha256" in reply["error"], reply
    status, reply = raw(cloud, "PUT", "/v1/blobs/..%2f..%2fetc%2fpasswd", b'{"data": ""}', auth(cloud))
    assert status == 400


def test_blob_upload_checks_the_digest(cloud: CloudServer) -> None:
    import base64
    import hashlib

    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    body = json.dumps({"data": base64.b64encode(data[:-1]).decode()}).encode()
    assert raw(cloud, "PUT", f"/v1/blobs/{sha}", body, auth(cloud))[0] == 400
    body = json.dumps({"data": base64.b64encode(data).decode()}).encode()
    assert raw(cloud, "PUT", f"/v1/blobs/{sha}", body, auth(cloud))[0] == 201
    assert cloud.store.path(sha).read_bytes() == data


def test_downgrade_refused_by_the_server(cloud: CloudServer, make_release: Callable[..., Any],
                                         make_core: Callable[..., Any], tmp_path: Path) -> None:
    """Another host (no local ledger) asking for an older version is refused by the server's own record."""
    import argparse

    from sparkflash.deploy.ota import deploy
    from sparkflash.deploy.run import Ledger

    core = make_core(cloud_dialect="ccl", cloud_save_begin=True)
    assert core.endpoints["cloud"].connected.wait(20)
    dev = core.state.info["device_id"]
    url = "http://{}:{}".format(*cloud.admin_addr[:2])  # type: ignore[index]
    args = argparse.Namespace(device=[dev], cloud=url, timeout=20.0, allow_downgrade=False)
    v2 = make_release(tmp_path / "s2", [("file", 0x80000, os.urandom(600))], version="2.0.0")
    [res] = deploy(args, v2, list(v2.manifest.regions), lambda e: None, Ledger(tmp_path / "host-a"))
    assert res.ok, res.to_json()
    v1 = make_release(tmp_path / "s1", [("file", 0x80000, os.urandom(600))], version="1.0.0")
    with pytest.raises(InputError, match="older than 2.0.0"):
        deploy(args, v1, list(v1.manifest.regions), lambda e: None, Ledger(tmp_path / "host-b"))


def test_resends_capped_per_chunk() -> None:
    """A device that rejects every copy of a chunk: the transfer fails with its reason, not forever."""
    s = ota.OtaSender(os.urandom(1024), MessageIds(1), 512)
    out = s.start(0.0)
    dev = MessageIds(100)
    out = s.receive(ota.update_ready(dev.next_mid(), out[0].token, None), 0.0)
    sent = 0
    while out and not s.finished:
        sent += 1
        out = s.receive(ota.chunk_received(dev.next_mid(), out[0].token, False), 0.0)
    assert s.state == "failed" and "4.00" in (s.error or "") and sent == 1 + s.timing.resends_per_chunk


def test_forged_hellos_leave_a_bounded_pending_dir(server_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    """1,000 forged Device OS hellos with new ids and an offered key: pending/ stays within its cap."""
    lim = Limits(per_peer=64, pending_max=50, pending_burst=10, pending_per_s=5.0)
    srv = CloudServer(server_key, DeviceRegistry(tmp_path / "devices"), host="127.0.0.1", port=0,
                      admin=None, limits=lim)
    offered = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pub = server_key.public_key()

    async def forge(sem: asyncio.Semaphore) -> None:
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            try:
                nonce = await r.readexactly(NONCE_LEN)
                w.write(device_hello(pub, nonce, secrets.token_bytes(12), offered))
                await w.drain()
                await r.read(1)  # the server closes
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                w.close()

    async def storm() -> None:
        sem = asyncio.Semaphore(32)
        await asyncio.gather(*(forge(sem) for _ in range(1000)))

    with ServerThread(srv):
        t0 = time.monotonic()
        asyncio.run(storm())
        elapsed = time.monotonic() - t0
        pending = list((tmp_path / "devices" / "pending").glob("*"))
        assert len(srv.registry.refused) == 100  # the in-memory list is capped too
    assert 0 < len(pending) <= min(lim.pending_max, lim.pending_burst + lim.pending_per_s * elapsed + 1)


def test_connections_per_peer_limited(server_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    import socket

    srv = CloudServer(server_key, DeviceRegistry(tmp_path / "devices"), host="127.0.0.1", port=0, admin=None,
                      limits=Limits(per_peer=4))
    with ServerThread(srv):
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(6)]
        try:
            got = [len(s.recv(64)) for s in socks]  # the nonce, or an immediate close
            assert got.count(NONCE_LEN) == 4 and got.count(0) == 2
        finally:
            for s in socks:
                s.close()


def test_handshakes_in_worker_processes(server_key: rsa.RSAPrivateKey, tmp_path: Path,
                                        make_release: Callable[..., Any]) -> None:
    """RSA off the event loop (cloud serve --rsa-workers): a real deployment still works end to end."""
    from sparkflash.protocols.cloud_handshake import server_public_der
    from sparkflash.virtual.core import CoreOptions, VirtualCore

    srv = CloudServer(server_key, DeviceRegistry(tmp_path / "devices"), host="127.0.0.1", port=0, admin=None,
                      rsa_workers=2)
    with ServerThread(srv):
        core = VirtualCore(tmp_path / "core", CoreOptions(endpoints=("cloud",)))
        core.state.set_server(server_public_der(server_key.public_key()), "127.0.0.1", srv.port)
        srv.registry.register(core.state.info["device_id"], core.state.device_public_pem())
        core.start()
        try:
            assert core.endpoints["cloud"].connected.wait(30)  # type: ignore[attr-defined]
            end = time.monotonic() + 10
            while core.state.info["device_id"] not in srv.sessions:
                assert time.monotonic() < end
                time.sleep(0.02)
            s = srv.sessions[core.state.info["device_id"]]
            assert s.info is not None and s.info.generation == "os"
        finally:
            core.stop()
