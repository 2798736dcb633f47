"""OTA fixtures: one server key per session (RSA-2048 generation is slow), a running cloud
server on ephemeral loopback ports, and virtual cores pointed at it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.cloud import CloudServer, DeviceRegistry, ServerThread
from sparkflash.cloud.server import Limits
from sparkflash.protocols.cloud_handshake import server_public_der
from sparkflash.virtual.core import CoreOptions, VirtualCore


@pytest.fixture(scope="session")
def server_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def cloud(server_key: rsa.RSAPrivateKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudServer]:
    """A server that deploys unsigned test releases (the explicit insecure flag); its token file in the env."""
    srv = CloudServer(server_key, DeviceRegistry(tmp_path / "devices"), host="127.0.0.1", port=0,
                      admin=("127.0.0.1", 0), insecure_unsigned=True,
                      limits=Limits(per_peer=256))  # every test device shares 127.0.0.1
    (tmp_path / "admin-token").write_text(srv.token)
    monkeypatch.setenv("SPARKFLASH_CLOUD_TOKEN_FILE", str(tmp_path / "admin-token"))
    with ServerThread(srv):
        yield srv


@pytest.fixture
def make_core(cloud: CloudServer, tmp_path: Path) -> Iterator[Callable[..., VirtualCore]]:
    """make_core(name, register=True, **extra) -> a started core with the cloud endpoint."""
    cores: list[VirtualCore] = []

    def make(name: str = "core", register: bool = True, faults: Any = None, device_key: Any = None,
             **extra: Any) -> VirtualCore:
        opts = CoreOptions(endpoints=("cloud",), extra=extra)
        if faults is not None:
            opts.faults = faults
        core = VirtualCore(tmp_path / name, opts)
        if device_key is not None:  # as a factory would provision it: the key's DER in the 612-byte slot at 0x2000
            from cryptography.hazmat.primitives import serialization

            der = device_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption())
            core.state.external.write_erased(0x2000, der.ljust(612, b"\x00"))
        core.state.set_server(server_public_der(cloud.key.public_key()), "127.0.0.1", cloud.port)
        if register:
            cloud.registry.register(core.state.info["device_id"], core.state.device_public_pem())
        cores.append(core.start())
        return core

    yield make
    for c in cores:
        c.stop()


@pytest.fixture
def make_release() -> Callable[..., Any]:
    return _make_release


def _make_release(store: Path, parts: list[tuple[str, int, bytes]], name: str = "ota-test", version: str = "1.0.0") -> Any:
    """An unsigned release of (region name, address, bytes); 0x08005000 is the firmware."""
    from sparkflash.boards import load_board
    from sparkflash.manifest.model import Manifest, Region
    from sparkflash.manifest.release import Release, digests, store_blob

    board = load_board("spark-core")
    regions = []
    for rname, address, data in parts:
        mem = next(m for m in board.memories if m.contains(address))
        sha, crc = digests(data)
        store_blob(store, data)
        kind = "firmware" if address == board.firmware_address else "data"
        regions.append(Region(rname, mem.name, address, len(data), sha, crc, tuple(mem.sectors(address, len(data))), kind))
    m = Manifest(name, version, board.name, tuple(regions))
    return Release(m, m.canonical(), None, store)


# -- the real device protocol code built for the host (tests/peers/ota_harness) ----------
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers" / "ota_harness"))
import realcore  # noqa: E402


@pytest.fixture(scope="session")
def real_exe(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """real_exe(kind) -> the harness built with that device code (once per session)."""
    built: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in built:
            built[kind] = realcore.build(kind, tmp_path_factory.getbasetemp() / "realcore" / kind)
        return built[kind]

    return get


@pytest.fixture(scope="session")
def core_key_pool() -> list[rsa.RSAPrivateKey]:
    """Device keys (RSA-1024 is quick, but the key check makes a pool worth sharing)."""
    from sparkflash.protocols.core_keys import generate_device_key

    return [generate_device_key() for _ in range(6)]


@pytest.fixture
def make_real_core(cloud: CloudServer, real_exe: Callable[[str], Path], core_key_pool: list[rsa.RSAPrivateKey],
                   tmp_path: Path) -> Iterator[Callable[..., realcore.RealCore]]:
    """make_real_core(kind, *harness_args, register=True, properties=None) -> a started real-code device."""
    cores: list[realcore.RealCore] = []

    def make(kind: str, *args: str, register: bool = True, properties: dict[str, Any] | None = None,
             key: rsa.RSAPrivateKey | None = None) -> realcore.RealCore:
        key = key or core_key_pool[len(cores) % len(core_key_pool)]
        core = realcore.RealCore(real_exe(kind), tmp_path / f"real-{kind}-{len(cores)}", cloud.port, key,
                                 server_public_der(cloud.key.public_key()), list(args))
        if register:
            cloud.registry.register(core.device_id, core.public_pem, properties)
        cores.append(core.start())
        return core

    yield make
    for c in cores:
        c.kill()
