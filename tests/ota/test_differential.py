"""One suite, two devices: the virtual Core against the REAL device code built for the host.

Each behaviour the issue found the virtual Core too lenient or too strict on is checked on
both, and must come out the same: 256-byte chunks in the 0.3.x dialect, Device OS dropping
the connection on an unknown request, no key-sector protection in real firmware (the
server is what refuses), and the Core's fixed-offset key reader.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.cloud import CloudServer
from sparkflash.protocols import coap, ota
from sparkflash.protocols.coap import Message
from sparkflash.protocols.core_keys import core_reads_exactly, generate_device_key

FW = 0x08005000
# (real harness kind, virtual Core options)
KINDS = {
    "stock": ("stock", {"cloud_dialect": "ccl", "cloud_agent": False}),
    "flasher": ("flasher", {"cloud_dialect": "ccl", "cloud_save_begin": True, "cloud_agent": False}),
    "deviceos": ("deviceos", {"cloud_dialect": "os", "cloud_agent": False}),
}


@dataclass
class Dev:
    """The few things the suite needs from either device."""

    device_id: str
    flash: Callable[[int, int], bytes]
    internal: Callable[[int, int], bytes]


@pytest.fixture(params=["real", "virtual"])
def make_dev(request: pytest.FixtureRequest, make_real_core: Callable[..., Any],
             make_core: Callable[..., Any]) -> Callable[..., Dev]:
    def make(kind: str, key: rsa.RSAPrivateKey | None = None, register: bool = True) -> Dev:
        real_kind, extra = KINDS[kind]
        if request.param == "real":
            c = make_real_core(real_kind, register=register, key=key)
            return Dev(c.device_id, c.flash, c.internal)
        v = make_core(f"v-{kind}", register=register, device_key=key, **extra)
        return Dev(v.state.info["device_id"], v.state.external.read, v.state.internal.read)

    return make


def session(cloud: CloudServer, device: str, timeout: float = 20.0) -> Any:
    end = time.monotonic() + timeout
    while device not in cloud.sessions:
        assert time.monotonic() < end, f"device {device} never connected"
        time.sleep(0.02)
    return cloud.sessions[device]


def on_loop(cloud: CloudServer, coro: Any, timeout: float = 30.0) -> Any:
    assert cloud.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, cloud.loop).result(timeout)


def transfer(cloud: CloudServer, s: Any, sender: ota.OtaSender) -> None:
    on_loop(cloud, s.transfer(sender, lambda n: None))
    assert sender.state == "done", sender.error


@pytest.mark.parametrize("kind", ["stock", "flasher"])
def test_ccl_takes_256_byte_chunks(kind: str, make_dev: Callable[..., Dev], cloud: CloudServer) -> None:
    """The Node spark-protocol server sends 256-byte chunks; a 0.3.x Core stores them in order."""
    d = make_dev(kind)
    s = session(cloud, d.device_id)
    data = os.urandom(8 * 256)
    transfer(cloud, s, ota.OtaSender(data, s.ids, 256, ota.DEST_FIRMWARE, 0))
    assert d.flash(0x60000, len(data)) == data  # the OTA slot, before the reset installs it


@pytest.mark.parametrize("kind", ["stock", "flasher", "deviceos"])
def test_unknown_request(kind: str, make_dev: Callable[..., Dev], cloud: CloudServer) -> None:
    """GET /x: 0.3.x drops it silently; Device OS drops the connection."""
    d = make_dev(kind)
    s = session(cloud, d.device_id)
    m = Message(coap.CON, coap.GET, s.ids.next_mid(), s.ids.next_token(), ((coap.URI_PATH, b"x"),))
    cloud.loop.call_soon_threadsafe(s.send, [m])  # type: ignore[union-attr]
    end = time.monotonic() + 3
    while time.monotonic() < end and not s.closed.is_set():
        time.sleep(0.05)
    if kind == "deviceos":
        assert s.closed.is_set(), "Device OS kept the connection after an unknown request"
    else:
        assert not s.closed.is_set(), "0.3.x dropped the connection on an unknown request"
        on_loop(cloud, s.describe())  # and still answers


def test_no_key_sector_protection_on_real_firmware(make_dev: Callable[..., Dev], cloud: CloudServer) -> None:
    """SaveBegin at 0x1000 replaces the server key: only the server's refusal protects it."""
    d = make_dev("flasher")
    s = session(cloud, d.device_id)
    junk = os.urandom(512)
    transfer(cloud, s, ota.OtaSender(junk, s.ids, 512, ota.DEST_EXTERNAL, 0x1000, use_save_begin=True))
    assert d.flash(0x1000, 512) == junk


@pytest.fixture(scope="session")
def misread_key() -> rsa.RSAPrivateKey:
    """An RSA-1024 key whose DER the Core's fixed-offset reader misreads (about 1 in 100)."""
    for _ in range(3000):
        k = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        if not core_reads_exactly(k):
            return k
    raise AssertionError("no misread key in 3000")


def test_key_the_core_misreads_never_connects(misread_key: rsa.RSAPrivateKey, make_dev: Callable[..., Dev],
                                              cloud: CloudServer) -> None:
    d = make_dev("stock", key=misread_key)
    time.sleep(2.5)  # a good key connects in well under a second on loopback
    assert d.device_id not in cloud.sessions


def test_generated_key_connects(make_dev: Callable[..., Dev], cloud: CloudServer) -> None:
    key = generate_device_key()
    assert core_reads_exactly(key)
    d = make_dev("deviceos", key=key)
    session(cloud, d.device_id)
