"""The server's RSA pool: requests batched per event-loop iteration, each caller gets its own answer."""

from __future__ import annotations

import asyncio
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.cloud.rsa_pool import BATCH, RsaPool
from sparkflash.errors import RemoteProtocolError
from sparkflash.protocols.cloud_handshake import NONCE_LEN, device_hello, open_server_reply
from sparkflash.protocols.core_keys import generate_device_key


@pytest.fixture(scope="module")
def server_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_batched_requests_answer_each_caller(server_key: rsa.RSAPrivateKey) -> None:
    """More requests in one iteration than a batch holds, a bad one among them: only its caller fails."""
    dev = generate_device_key()
    n = 2 * BATCH + 3
    ids = [os.urandom(12) for _ in range(n)]
    nonces = [os.urandom(NONCE_LEN) for _ in range(n)]
    blocks = [device_hello(server_key.public_key(), nonces[i], ids[i], dev) for i in range(n)]
    blocks[5] = bytes(256)  # does not decrypt

    async def main() -> tuple[list[object], list[bytes]]:
        pool = RsaPool(server_key, 2)
        try:
            hellos = await asyncio.gather(*(pool.open_hello(nonces[i], blocks[i]) for i in range(n)),
                                          return_exceptions=True)
            material = [os.urandom(40) for _ in range(3)]
            replies = await asyncio.gather(*(pool.reply(dev.public_key(), m) for m in material))
            assert [open_server_reply(dev, server_key.public_key(), r).material for r in replies] == material
            return list(hellos), replies
        finally:
            pool.close()

    hellos, _ = asyncio.run(main())
    assert isinstance(hellos[5], RemoteProtocolError)
    assert [h.device_id for i, h in enumerate(hellos) if i != 5] == [d for i, d in enumerate(ids) if i != 5]  # type: ignore[union-attr]


def test_requests_after_close_fail_as_a_lost_connection(server_key: rsa.RSAPrivateKey) -> None:
    async def main() -> None:
        pool = RsaPool(server_key, 1)
        pool.close()
        with pytest.raises(ConnectionError, match="closing"):
            await pool.open_hello(os.urandom(NONCE_LEN), bytes(256))

    asyncio.run(main())
