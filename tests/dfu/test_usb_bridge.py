"""`virtual-core --usb`: real libusb programs (dfu-util, pyusb) reach the virtual Core as USB 1d50:607f (#15 point 6).

Clients run as child processes with the bridge's LD_PRELOAD/UMOCKDEV_DIR (umockdev's
preload library intercepts their usbdevfs ioctls); this test process itself is not
preloaded, so its own in-process checks read the virtual Core's flash directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sparkflash.virtual.core import CoreOptions, VirtualCore
from sparkflash.virtual.usb_attach import UsbBridge

pytestmark = pytest.mark.interop


class UsbCore:
    def __init__(self, core: VirtualCore, bridge: UsbBridge) -> None:
        self.core, self.bridge = core, bridge
        self.env = {**os.environ, **bridge.env()}

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=120, check=False)
        if check and p.returncode:
            raise AssertionError(f"{argv} exit {p.returncode}: {p.stderr[-1500:]}")
        return p

    def sparkflash(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "sparkflash", *argv, check=check)


@pytest.fixture
def make_usb_core(core_dir: Path, usb_bridge_available: None) -> Iterator[Callable[..., UsbCore]]:
    made: list[UsbCore] = []

    def make(*extra: str, unconfigured: bool = False) -> UsbCore:
        core = VirtualCore(core_dir, CoreOptions(dfu_poll=False, endpoints=("dfu",))).start()
        bridge = UsbBridge(core.state.path, unconfigured=unconfigured, extra=extra)
        try:
            bridge.start()
        except BaseException:
            core.stop()
            raise
        made.append(UsbCore(core, bridge))
        return made[-1]

    yield make
    for u in made:
        u.bridge.stop()
        u.core.stop()


def result(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(p.stdout.splitlines()[-1])
    return doc


def test_dfu_util_lists_the_virtual_core(make_usb_core: Callable[..., UsbCore], tool: Callable[[str], str]) -> None:
    tool("dfu-util")
    u = make_usb_core()
    out = u.run("dfu-util", "-l").stdout
    serial = u.core.state.info["device_id"]
    assert (f'Found DFU: [1d50:607f] ver=0200, devnum=2, cfg=1, intf=0, path="1-1", alt=0, '
            f'name="@Internal Flash  /0x08000000/20*001Ka,108*001Kg", serial="{serial}"') in out
    assert 'alt=1, name="@SPI Flash : SST25x/0x00000000/512*04Kg"' in out


def test_pyusb_backend_through_libusb(make_usb_core: Callable[..., UsbCore], tmp_path: Path) -> None:
    u = make_usb_core()
    data = os.urandom(9000)
    (tmp_path / "d.bin").write_bytes(data)
    r = result(u.sparkflash("flash", "--via", "dfu", "--device", "1d50:607f", "0x90000", str(tmp_path / "d.bin"),
                            "--json"))
    assert r["ok"] and r["deployments"][0]["regions"][0]["status"] == "verified"
    assert u.core.state.external.read(0x90000, len(data)) == data
    u.sparkflash("read", "0x90000", str(len(data)), "-o", str(tmp_path / "back.bin"), "--device", "usb:1-1")
    assert (tmp_path / "back.bin").read_bytes() == data
    devs = result(u.sparkflash("devices", "--json"))["devices"]
    assert {"kind": "dfu", "device": "usb:1-1", "id": u.core.state.info["device_id"], "usb": "1d50:607f"} in devs


def test_dfu_util_backend_deploy(make_usb_core: Callable[..., UsbCore], example_release: Path,
                                 tool: Callable[[str], str]) -> None:
    tool("dfu-util")
    u = make_usb_core()
    argv = ("deploy", str(example_release), "--no-verify-signature", "--via", "dfu", "--backend", "dfu-util",
            "--device", "1d50:607f", "--json")
    first = result(u.sparkflash(*argv))
    assert [g["status"] for g in first["deployments"][0]["regions"]] == ["verified"] * 3
    again = result(u.sparkflash(*argv))
    assert [g["status"] for g in again["deployments"][0]["regions"]] == ["unchanged"] * 3
    from sparkflash.manifest.release import open_release

    rel = open_release(example_release, None, require_signature=False)
    for r in rel.manifest.regions:
        flash = u.core.state.internal if r.memory == "internal" else u.core.state.external
        assert flash.read(r.address, r.size) == rel.blob(r)


def test_dfu_util_runs_per_region(make_usb_core: Callable[..., UsbCore], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, tool: Callable[[str], str]) -> None:
    """One listing, one upload of the touched sectors, one download and one read-back per run;
    the region digest comes from that read-back (it was 5 runs: the digest read again)."""
    tool("dfu-util")
    u = make_usb_core()
    for k, v in u.bridge.env().items():
        monkeypatch.setenv(k, v)  # for the dfu-util children of this process only
    from sparkflash.boards import load_board
    from sparkflash.deploy.dfu import DfuFlasher, DfuUtilBackend
    from sparkflash.deploy.flash_input import adhoc_release
    from sparkflash.deploy.run import deploy_release
    from sparkflash.transports.dfu_util import DfuUtil

    f = tmp_path / "d.bin"
    f.write_bytes(os.urandom(5000))
    rel = adhoc_release([(0x90000, f)], "spark-core", tmp_path / "store")
    for expect_status, expect_runs in (("verified", 4), ("unchanged", 2)):
        backend = DfuUtilBackend(DfuUtil(), 0x1D50, 0x607F)
        res = deploy_release(DfuFlasher(backend, load_board("spark-core")), rel)
        assert res.regions[0].status == expect_status and backend.runs == expect_runs
        backend.close()


def test_allow_protected_by_dfu_util_behaves_as_pyusb(make_usb_core: Callable[..., UsbCore], tmp_path: Path,
                                                      tool: Callable[[str], str]) -> None:
    """Writing the read-only bootloader segment with --allow-protected: dfu-util needs `:force`
    (without it: "Segment ... not writable", a different failure than pyusb's). With it, both
    backends reach the Core, which ignores the write: both report the read-back mismatch, exit 3."""
    tool("dfu-util")
    u = make_usb_core()
    f = tmp_path / "boot.bin"
    f.write_bytes(b"\0" * 1024)
    before = u.core.state.internal.read(0x08000000, 0x5000)
    for backend in ("pyusb", "dfu-util"):
        p = u.sparkflash("flash", "--via", "dfu", "--backend", backend, "--device", "1d50:607f", "--allow-protected",
                         "--allow-text", "0x08001000", str(f), "--json", check=False)
        assert p.returncode == 3, (backend, p.stderr)
        (region,) = result(p)["deployments"][0]["regions"]
        assert region["status"] == "failed" and "read-back differs at 0x08001000" in region["error"], backend
    assert u.core.state.internal.read(0x08000000, 0x5000) == before


def test_unconfigured_device_is_configured(make_usb_core: Callable[..., UsbCore], tmp_path: Path) -> None:
    u = make_usb_core(unconfigured=True)
    data = os.urandom(3000)
    (tmp_path / "d.bin").write_bytes(data)
    u.sparkflash("flash", "--via", "dfu", "--device", "1d50:607f", "0x90000", str(tmp_path / "d.bin"))
    assert u.core.state.external.read(0x90000, len(data)) == data


def test_bus_errors_mid_write_are_retried(make_usb_core: Callable[..., UsbCore], tmp_path: Path) -> None:
    u = make_usb_core("--fail-urbs", "40,41,90")  # mid-write: DNLOAD/GETSTATUS transfers lost on the bus
    data = os.urandom(20_000)
    (tmp_path / "d.bin").write_bytes(data)
    r = result(u.sparkflash("flash", "--via", "dfu", "--device", "1d50:607f", "0x90000", str(tmp_path / "d.bin"),
                            "--json"))
    assert r["ok"], r
    assert u.core.state.external.read(0x90000, len(data)) == data


def test_busy_interface_is_named(make_usb_core: Callable[..., UsbCore], tmp_path: Path) -> None:
    u = make_usb_core("--busy")
    (tmp_path / "d.bin").write_bytes(os.urandom(100))
    p = u.sparkflash("flash", "--via", "dfu", "--device", "1d50:607f", "0x90000", str(tmp_path / "d.bin"), check=False)
    assert p.returncode == 4
    assert "busy: another program has its interface claimed" in p.stderr


def test_two_target_dfu_file_and_leave(make_usb_core: Callable[..., UsbCore], tmp_path: Path,
                                       tool: Callable[[str], str]) -> None:
    tool("dfu-util")
    u = make_usb_core()
    app = b"\x00\x50\x00\x20\x31\x51\x00\x08" + os.urandom(3000)
    ext = os.urandom(5000)
    (tmp_path / "app.bin").write_bytes(app)
    (tmp_path / "ext.bin").write_bytes(ext)
    out = tmp_path / "both.dfu"
    u.sparkflash("dfu", "pack", f"{tmp_path}/app.bin@0x08005000", f"{tmp_path}/ext.bin@0x80000", "-o", str(out))
    u.run("dfu-util", "-d", "1d50:607f", "-D", str(out))
    assert u.core.state.internal.read(0x08005000, len(app)) == app
    assert u.core.state.external.read(0x80000, len(ext)) == ext
    ep: Any = u.core.endpoints["dfu"]
    u.run("dfu-util", "-d", "1d50:607f", "-a", "0", "-s", "0x08005000:leave", "-U", str(tmp_path / "x.bin"),
          check=False)
    assert ep.reset_done.wait(5) and ep.resets == 1


def test_virtual_core_usb_command(usb_bridge_available: None, core_dir: Path, tool: Callable[[str], str]) -> None:
    """`sparkflash virtual-core --usb --json` prints the environment a libusb client needs."""
    tool("dfu-util")
    proc = subprocess.Popen([sys.executable, "-m", "sparkflash", "virtual-core", "--state", str(core_dir), "--usb",
                             "--json", "--endpoints", "dfu", "--no-dfu-poll"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        usb = info["usb"]
        assert usb["device"] == "1d50:607f" and usb["path"] == "usb:1-1"
        assert usb["env"]["LD_PRELOAD"] == "libumockdev-preload.so.0"
        out = subprocess.run(["dfu-util", "-l"], env={**os.environ, **usb["env"]}, capture_output=True, text=True,
                             timeout=60, check=True).stdout
        assert f'serial="{info["device_id"]}"' in out and "alt=1" in out
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_ioctl_server_built_once_per_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge's C server is compiled on first use into the cache, named by its source digest,
    and reused; a compiler that fails is named with the source it could not build."""
    from sparkflash.errors import ToolchainError
    from sparkflash.virtual.usb_attach import SERVER_SOURCE, ioctl_server

    monkeypatch.setenv("SPARKFLASH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CC", "false")
    with pytest.raises(ToolchainError, match=r"false could not build usb_ioctl_server\.c"):
        ioctl_server()
    assert not list((tmp_path / "home" / "cache" / "usb").iterdir())  # no half-built binary left behind
    monkeypatch.delenv("CC")
    built = ioctl_server()
    assert built.parent == tmp_path / "home" / "cache" / "usb" and os.access(built, os.X_OK)
    mtime = built.stat().st_mtime_ns
    assert ioctl_server() == built and built.stat().st_mtime_ns == mtime
    p = subprocess.run([str(built)], capture_output=True, text=True, check=False)  # no arguments: its usage, exit 2
    assert p.returncode == 2 and "usage: usb_ioctl_server" in p.stderr
    assert built.name.startswith(SERVER_SOURCE.stem + "-")


def test_client_memory_through_the_preload_library(make_usb_core: Callable[..., UsbCore], tmp_path: Path,
                                                   tool: Callable[[str], str]) -> None:
    """Where the kernel refuses process_vm_readv/writev (ptrace rules), the ioctl server reads and
    writes the client's URBs through umockdev's READ_MEM/WRITE_MEM messages instead: dfu-util and
    pyusb get the same bytes."""
    tool("dfu-util")
    u = make_usb_core("--socket-memory")
    data = os.urandom(5000)
    (tmp_path / "d.bin").write_bytes(data)
    u.run("dfu-util", "-d", "1d50:607f", "-a", "1", "-s", "0xA0000", "-D", str(tmp_path / "d.bin"))
    assert u.core.state.external.read(0xA0000, len(data)) == data
    u.sparkflash("read", "0xA0000", str(len(data)), "-o", str(tmp_path / "back.bin"), "--device", "usb:1-1")
    assert (tmp_path / "back.bin").read_bytes() == data
