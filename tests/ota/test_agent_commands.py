"""The server's agent line commands (cloud/agent_commands.py) against the light device's agent,
which keeps "+" pieces as the C agent does (tests/agent/test_conformance_cloud.py)."""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.cloud import agent_commands
from sparkflash.fleet.lightcore import LightDevice, LightOptions

SHA = "ab" * 32


class _Session:
    """Just the two calls agent_commands makes, straight into the device's cloud function."""

    def __init__(self, device: LightDevice) -> None:
        self.device, self.device_id = device, device.id

    async def call_function(self, key: str, arg: str) -> int:
        assert key == "sfdigest"
        return self.device._agent(arg)

    async def variable(self, key: str) -> bytes:
        assert key == "sfresult"
        return self.device._result


def _device() -> LightDevice:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return LightDevice("5f" + "0" * 22, key, key.public_key(), ("127.0.0.1", 1), LightOptions(agent=True))


def test_a_piece_left_by_a_dead_session_does_not_break_the_next_command() -> None:
    dev = _device()
    s = _Session(dev)
    asyncio.run(agent_commands.write_release_record(s, "web", "1.2.3", SHA))  # type: ignore[arg-type]
    assert asyncio.run(agent_commands.read_release_record(s)) == ("web", "1.2.3", SHA)  # type: ignore[arg-type]
    dev._agent("+REC SET web 1.2.4 ")  # the first piece of a REC SET whose server was killed
    assert asyncio.run(agent_commands.read_release_record(s)) == ("web", "1.2.3", SHA)  # type: ignore[arg-type]
