"""A real SoftHSM2 token with an Ed25519 key generated on it (PKCS#11, CKM_EDDSA), for signing tests.

The token lives in a session temp dir (SOFTHSM2_CONF); the key never exists as a file.
Import the fixture where needed: `from softhsm_token import Token, token`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

__all__ = ["MODULES", "PIN", "Token", "token"]

MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
PIN = "4321"


@dataclass
class Token:
    module: str
    label: str

    def uri(self, obj: str = "release", pin: bool = True) -> str:
        q = f"module-path={self.module}" + (f"&pin-value={PIN}" if pin else "")
        return f"pkcs11:token={self.label};object={obj}?{q}"


_made: list[Token] = []  # the one token of this process, whichever conftest's fixture made it


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    """One token per test session: SoftHSM2 reads its configuration once per process (several
    conftests import this fixture; the first to run creates the token, the others reuse it)."""
    if _made:
        yield _made[0]
        return
    util = shutil.which("softhsm2-util")
    module = next((m for m in MODULES if os.path.exists(m)), None)
    if util is None or module is None:
        if os.environ.get("CI"):
            pytest.fail("softhsm2 is not installed although tools/setup installs it (apt package softhsm2)")
        pytest.skip("softhsm2 is not installed (apt-get install softhsm2)")
    import pkcs11  # a dependency of the package (pyproject.toml): never missing
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    tmp_path = tmp_path_factory.mktemp("softhsm")
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # subprocesses (the CLI) inherit it
    subprocess.run([util, "--init-token", "--free", "--label", "sparkflash-test", "--pin", PIN, "--so-pin", "87654321"],
                   check=True, capture_output=True)
    tok = pkcs11.lib(module).get_token(token_label="sparkflash-test")
    with tok.open(user_pin=PIN, rw=True) as s:
        params = s.create_domain_parameters(
            KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")}, local=True)
        params.generate_keypair(mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN, store=True, label="release")
    _made.append(Token(module, "sparkflash-test"))
    yield _made[0]
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old
