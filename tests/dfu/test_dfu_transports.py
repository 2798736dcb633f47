"""DFU transports: the virtual core as a device, pyusb with no device, dfu-util run for real."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest
import usb.core

from sparkflash.cli import main
from sparkflash.errors import TransportError
from sparkflash.protocols.dfuse import EndpointStalled
from sparkflash.transports.dfu_util import DfuUtil, download_args, upload_args
from sparkflash.transports.usb_device import UsbPipe, _translate
from sparkflash.virtual.core import VirtualCore


def test_dfu_list_shows_the_cores_descriptors(dfu_core: VirtualCore, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dfu", "list", "--device", f"virtual:{dfu_core.state.path}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    serial = dfu_core.state.info["device_id"]
    assert lines == [
        f'Found DFU: [1d50:607f] ver=0200, path="virtual:{dfu_core.state.path}", alt=0, '
        f'name="@Internal Flash  /0x08000000/20*001Ka,108*001Kg", serial="{serial}"',
        f'Found DFU: [1d50:607f] ver=0200, path="virtual:{dfu_core.state.path}", alt=1, '
        f'name="@SPI Flash : SST25x/0x00000000/512*04Kg", serial="{serial}"',
    ]


def test_pyusb_without_a_device_says_how_to_enter_dfu_mode() -> None:
    with pytest.raises(TransportError, match="hold MODE, tap RESET|libusb"):
        UsbPipe.open(0x1D50, 0x607F)


def test_libusb_errors_are_translated() -> None:
    acc = _translate(usb.core.USBError("Access denied", errno.EACCES, errno.EACCES), "usb:1-2", "claiming")
    assert isinstance(acc, TransportError) and "udev" in str(acc) and "1d50" in str(acc)
    assert isinstance(_translate(usb.core.USBError("Pipe", errno.EPIPE, errno.EPIPE), "usb:1-2", "x"), EndpointStalled)


def test_dfu_util_arguments_are_what_a_core_user_types() -> None:
    f = Path("ext.bin")
    assert download_args(0x1D50, 0x607F, 1, 0x80000, f) == ["-d", "1d50:607f", "-a", "1", "-s", "0x00080000", "-D",
                                                            "ext.bin"]
    assert download_args(0x1D50, 0x607F, 0, 0x08005000, f, leave=True)[-3] == "0x08005000:leave"
    assert upload_args(0x1D50, 0x607F, 1, 0x2000, 1024, f, path="1-2") == [
        "-d", "1d50:607f", "-p", "1-2", "-a", "1", "-s", "0x00002000:1024", "-U", "ext.bin"]


@pytest.mark.interop
def test_real_dfu_util_without_a_device(tmp_path: Path, tool: Callable[[str], str]) -> None:
    tool("dfu-util")
    f = tmp_path / "raw.bin"
    f.write_bytes(b"\xaa" * 64)
    with pytest.raises(TransportError, match=r"exit 74.*No DFU capable USB device.*hold MODE"):
        DfuUtil().download(0x1D50, 0x607F, 1, 0x80000, f)


@pytest.mark.interop
def test_deploy_with_dfu_util_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      tool: Callable[[str], str]) -> None:
    tool("dfu-util")
    f = tmp_path / "x.bin"
    f.write_bytes(b"\x80" * 100)  # not text, which `flash` refuses (#15)
    base = ["flash", str(f), "--address", "0x80000", "--via", "dfu", "--backend", "dfu-util"]
    assert main([*base, "--device", f"virtual:{tmp_path}"]) == 2
    assert "dfu-util talks only to USB" in capsys.readouterr().err
    assert main(base) == 4
    assert "no DFU device 1d50:607f" in capsys.readouterr().err
