"""Host-side record of deployed versions, used to refuse downgrades."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkflash.deploy.run import Ledger
from sparkflash.errors import InputError
from sparkflash.manifest.model import parse_version


def test_ledger_round_trip(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    assert led.last("dev1", "rel") is None
    led.record("dev1", "rel", "1.2.0")
    led.record("dev1", "other", "0.1.0")
    assert Ledger(tmp_path).last("dev1", "rel") == "1.2.0"
    assert led.last("dev2", "rel") is None


@pytest.mark.parametrize(
    ("older", "newer"),
    [("1.2.3", "1.2.4"), ("1.9.0", "1.10.0"), ("2.0.0-rc.1", "2.0.0"), ("0.9.9", "1.0.0"),
     ("1.0.0-rc.9", "1.0.0-rc.10"), ("1.0.0-alpha", "1.0.0-alpha.1"), ("1.0.0-9", "1.0.0-alpha"),
     ("1.0.0-beta+exp-1", "1.0.0")],
)
def test_semver_order(older: str, newer: str) -> None:
    assert parse_version(older) < parse_version(newer)


@pytest.mark.parametrize("bad", ["1.2", "v1.2.3", "1.2.x", "", "1.0.0-rc..1", "1.0.0-ü"])
def test_bad_version_is_input_error(bad: str) -> None:
    with pytest.raises(InputError, match="semver"):
        parse_version(bad)
