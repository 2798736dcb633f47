"""Fixtures: the device agent built for the host with gcc (once per session) and run on a
pty, and `device`, which runs one conformance test against it and the virtual Core."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sfa_harness import Device, HostAgent, build_host_agent


@pytest.fixture(scope="session")
def agent_exe(tmp_path_factory: pytest.TempPathFactory, tool: Callable[[str], str]) -> Path:
    tool("gcc")
    return build_host_agent(tmp_path_factory.mktemp("agent-build"))


@pytest.fixture
def start_agent(agent_exe: Path, tmp_path: Path) -> Iterator[Callable[..., HostAgent]]:
    """start_agent(env=None) -> a running host agent; stopped (and its exit checked) afterwards."""
    agents: list[HostAgent] = []

    def start(env: dict[str, str] | None = None) -> HostAgent:
        agents.append(HostAgent(agent_exe, tmp_path / f"agent{len(agents)}", env))
        return agents[-1]

    yield start
    for a in agents:
        a.stop()


@pytest.fixture
def host_agent(start_agent: Callable[..., HostAgent]) -> HostAgent:
    return start_agent()


@pytest.fixture(params=["c-agent", "virtual-core"])
def device(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Device]:
    """The same protocol test against the host-built C agent and the Python virtual Core."""
    if request.param == "c-agent":
        agent = request.getfixturevalue("host_agent")
        yield Device("c-agent", agent.port, agent.device_id, agent.read_external, agent.write_external)
        return
    from sparkflash.virtual.core import CoreOptions, VirtualCore

    core = VirtualCore(tmp_path / "core", CoreOptions(endpoints=("serial",))).start()
    try:
        ext = core.state.external

        def write(address: int, data: bytes) -> None:
            ext.write_erased(address, data)

        yield Device("virtual-core", core.endpoints["serial"].port,  # type: ignore[attr-defined]
                     core.state.info["device_id"], lambda a, n: ext.read(a, n), write)
    finally:
        ep = core.endpoints.get("serial")
        core.stop()
        assert getattr(ep, "error", None) is None


PEERS = Path(__file__).resolve().parents[2].parent / "shared" / "peers"


@pytest.fixture(scope="session")
def peer_trees(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """peer_trees("spark_11") -> a directory holding that set's core-firmware and its two
    sibling libraries, unpacked from ../shared/peers once per session (skips without it
    locally, fails under CI)."""
    import os
    import tarfile

    done: dict[str, Path] = {}

    def unpack(name: str) -> Path:
        if name in done:
            return done[name]
        archives = [PEERS / f"{lib}-{name}.tar.gz" for lib in ("core-firmware", "core-common-lib", "core-communication-lib")]
        missing = [a.name for a in archives if not a.is_file()]
        if missing:
            if os.environ.get("CI"):
                pytest.fail(f"peer archives missing under {PEERS}: {', '.join(missing)}")
            pytest.skip(f"peer archives missing under {PEERS}: {', '.join(missing)}")
        dest = tmp_path_factory.mktemp(f"peers-{name}")
        for a in archives:
            with tarfile.open(a) as t:
                t.extractall(dest, filter="data")
        done[name] = dest
        return dest

    return unpack
