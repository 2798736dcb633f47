"""One case list, two devices: the real receivers built for the host and the virtual Core's
`stock` serial mode must give the same results (exit code, status, bytes on flash)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sparkflash.virtual.core import VirtualCore
from test_real_receiver import firmware, flash, region_done


class Dev:
    """The two kinds of device behind one small interface."""

    def __init__(self, port: str, external: Callable[[int, int], bytes], internal: Callable[[int, int], bytes],
                 resets: Callable[[], int]) -> None:
        self.port, self.external, self.internal, self.resets = port, external, internal, resets


@pytest.fixture(params=["real", "virtual"])
def device(request: pytest.FixtureRequest, make_real: Callable[..., Any], make_core: Callable[..., VirtualCore]
           ) -> Callable[..., Dev]:
    def make(mode: str, address: int = 0x80000, receiver: str = "2014") -> Dev:
        if request.param == "real":
            real_mode = {"stock": "listen", "stock-save": "save" if receiver == "2014" else "save2015"}[mode]
            c = make_real(mode=real_mode, address=address)
            return Dev(c.port, c.external, c.internal, lambda: c.resets)
        v = make_core(serial_mode=mode, stock_save_address=address, stock_receiver=receiver)
        ep = v.endpoints["serial"]
        return Dev(ep.port, v.state.external.read, v.state.internal.read, lambda: ep.resets)  # type: ignore[attr-defined]
    return make


def test_firmware_by_f(device: Callable[..., Dev], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = device("stock")
    fw, data = firmware(tmp_path, 40_001)
    rc, ev = flash(capsys, d.port, 0x08005000, fw, "--accept-unverified")
    assert (rc, region_done(ev)["status"]) == (0, "sent"), ev[-1]
    assert d.resets() == 1 and d.internal(0x08005000, len(data)) == data


def test_file_refused_by_listening_mode(device: Callable[..., Dev], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    d = device("stock")
    f = tmp_path / "a.bin"
    f.write_bytes(os.urandom(100))
    rc, ev = flash(capsys, d.port, 0x80000, f, "--accept-unverified")
    assert rc == 2 and "without the sparkflash agent" in ev[-1]["stderr"]


@pytest.mark.parametrize("size", [1, 128, 129, 1024, 1025, 10_000])
def test_save_file_and_padding(device: Callable[..., Dev], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               size: int) -> None:
    d = device("stock-save")
    f = tmp_path / "a b.bin"  # a name with a space
    data = os.urandom(size)
    f.write_bytes(data)
    rc, ev = flash(capsys, d.port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified")
    assert (rc, region_done(ev)["status"]) == (0, "sent"), ev[-1]
    from sparkflash.protocols.ymodem import padded_size

    pad = padded_size(size) - size
    assert d.external(0x80000, size + pad + 1) == data + b"\x1a" * pad + b"\xff"


def test_too_big_for_2014(device: Callable[..., Dev], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = device("stock-save")
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(0x1B001))
    rc, ev = flash(capsys, d.port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified")
    assert rc == 5 and "higher than the allowed space" in region_done(ev)["error"]
    assert d.external(0x80000, 16) == b"\xff" * 16  # refused before erasing


def test_2015_takes_more_than_0x1b000(device: Callable[..., Dev], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    d = device("stock-save", receiver="2015")
    f = tmp_path / "big.bin"
    data = os.urandom(0x1B001)
    f.write_bytes(data)
    rc, ev = flash(capsys, d.port, 0x80000, f, "--stock-save-address", "0x80000", "--accept-unverified")
    assert rc == 0, ev[-1]
    assert d.external(0x80000, len(data)) == data
