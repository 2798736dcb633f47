"""A cloud server stopped while a client still reads a deployment's event stream stops quietly.

The campaign found it: a deploy killed mid-OTA leaves its event stream open, and stopping
the server then logged an asyncio traceback (Python 3.11's start_server callback reports a
connection handler cancelled at shutdown as "Exception in callback ..."). The device here is
registered but never connects, so the deployment, and its stream, never end by themselves.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.cloud import CloudServer, DeviceRegistry, ServerThread
from sparkflash.deploy.ota import AdminClient
from sparkflash.fleet.lightcore import public_pem
from sparkflash.protocols.core_keys import generate_device_key


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_server_stopped_with_an_event_stream_open_logs_no_traceback(
        tmp_path: Path, make_release: Any, store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    registry = DeviceRegistry(tmp_path / "devices")
    device = "7a" + os.urandom(11).hex()
    registry.register(device, public_pem(generate_device_key()), {"save_begin": True})
    data = os.urandom(4096)
    rel = make_release(tmp_path / "rel", [("web", 0x100000, data)])
    srv = CloudServer(key, registry, host="127.0.0.1", port=0, admin=("127.0.0.1", 0), insecure_unsigned=True,
                      database=store_url, store=tmp_path / "state")
    caplog.set_level(logging.DEBUG)
    thread = ServerThread(srv).start()
    try:
        assert srv.admin_addr is not None
        host, port = srv.admin_addr[:2]
        client = AdminClient(f"http://{host}:{port}", srv.token)
        client.call("PUT", f"/v1/blobs/{rel.manifest.regions[0].sha256}", {"data": base64.b64encode(data).decode()})
        rid = client.call("POST", "/v1/deployments", {"manifest_json": rel.raw.decode(), "devices": [device]})["id"]
        stream = socket.create_connection((host, port), timeout=10)
        stream.sendall(f"GET /v1/deployments/{rid}/events HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {srv.token}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = stream.recv(4096)
            assert chunk, f"the stream closed before its head: {head!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
    finally:
        thread.stop()
    stream.close()
    assert not thread._thread.is_alive(), "the server did not stop within 10 s with a stream open"
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not noisy, [f"{r.name}: {r.getMessage()}" for r in noisy]
