"""Serial deploys over real ptys: the virtual Core's listening mode, YMODEM, SUM checks."""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.boards import load_board
from sparkflash.cli import main
from sparkflash.deploy.serial_ymodem import SerialFlasher, plan_region
from sparkflash.errors import InputError, RemoteProtocolError
from sparkflash.manifest.keys import TrustStore
from sparkflash.manifest.model import Region
from sparkflash.manifest.release import digests, open_release
from sparkflash.protocols import listening as L
from sparkflash.transports.serial_port import open_serial
from sparkflash.virtual.core import VirtualCore

BOARD = load_board("spark-core")


def region(name: str, memory: str, address: int, data: bytes, **kw: object) -> Region:
    sha, crc = digests(data)
    mem = BOARD.memory(memory)
    return Region(name, memory, address, len(data), sha, crc, tuple(mem.sectors(address, len(data))), **kw)  # type: ignore[arg-type]


def ask(port: str, line: bytes) -> str:
    link = open_serial(port)
    try:
        link.drain_input()
        link.write(line)
        buf = L.LineBuffer()
        for _ in range(50):
            buf.receive_data(link.read(256, 0.1))
            got = buf.next_line()
            if got is not None:
                return got
        raise AssertionError(f"no reply to {line!r}")
    finally:
        link.close()


def test_listening_commands(serial_core: VirtualCore) -> None:
    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    did = serial_core.state.info["device_id"]
    assert Path(port).resolve().exists() and (serial_core.state.path / "serial.port").read_text().strip() == port
    assert ask(port, b"ID\n") == f"OK {did}"
    assert ask(port, b"i") == f"Your core id is {did}"
    key_head = serial_core.state.external.read(0x2000, 16)
    assert ask(port, b"SUM 00002000 10\r\n").split()[:2] == ["OK", f"{zlib.crc32(key_head):08x}"]
    assert ask(port, b"SUM 08000000 20001\n").startswith("ERR 2 ")
    assert ask(port, b"SAVE 00001000 10\n").startswith("ERR 2 ")  # keys: not without ANY
    assert ask(port, b"SAVE 00070000 10\n").startswith("ERR 2 ")  # inside OTA but not at its start
    assert ask(port, b"SAVE 001ff000 2000\n").startswith("ERR 2 ")  # past the end of the chip
    assert ask(port, b"FROB 1\n").startswith("ERR 1 unknown command")
    assert ask(port, b"SUM 0x10 zz\n").startswith("ERR 1 ")


def test_example_release_lands_byte_identical(serial_core: VirtualCore, signed_example: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    manifest, pub = signed_example
    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    rc = main(["deploy", str(manifest), "--via", "serial", "--port", port, "--trust", str(pub), "--json"])
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 0, events[-1]
    rel = open_release(manifest, TrustStore.from_paths([pub]))
    st = serial_core.state
    for r in rel.manifest.regions:
        flash = st.internal if r.memory == "internal" else st.external
        assert flash.read(r.address, r.size) == rel.blob(r), r.name
    done = [e for e in events if e["event"] == "region-done"]
    assert [(e["region"], e["status"]) for e in done] == [(r.name, "verified") for r in rel.manifest.regions]
    progress = [e for e in events if e["event"] == "progress"]
    assert {e["region"] for e in progress} == {r.name for r in rel.manifest.regions}
    assert events[-1]["event"] == "result" and events[-1]["ok"] is True
    assert st.info["flags"]["ota_flashed"] is True  # the firmware went through the bootloader's copy
    assert serial_core.endpoints["serial"].resets == 1  # type: ignore[attr-defined]


def test_flash_command_any_address_keeps_sector_neighbours(serial_core: VirtualCore, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    ext = serial_core.state.external
    ext.write_erased(0x101000, b"N" * 0x1000)  # a neighbour sharing the destination's sector
    data = os.urandom(0x900)
    f = tmp_path / "blob.bin"
    f.write_bytes(data)
    rc = main(["flash", str(f), "--address", "0x101400", "--via", "serial", "--port", port, "--json"])
    assert rc == 0, capsys.readouterr()
    assert ext.read(0x101400, len(data)) == data
    assert ext.read(0x101000, 0x400) == b"N" * 0x400 and ext.read(0x101d00, 0x300) == b"N" * 0x300
    # The factory slot is outside the stock ranges: allowed because the host vouches (ANY).
    rc = main(["flash", str(f), "--address", "0x20000", "--via", "serial", "--port", port, "--json"])
    assert rc == 0 and ext.read(0x20000, len(data)) == data


def test_plan_refuses_what_serial_cannot_write() -> None:
    with pytest.raises(InputError, match="only as the firmware image"):
        plan_region(BOARD, region("x", "internal", 0x08010000, b"abc"))
    with pytest.raises(InputError, match="protected area 'device_key'"):
        plan_region(BOARD, region("k", "external", 0x2000, b"abc"))
    assert plan_region(BOARD, region("u", "external", 0x80000, b"abc")).any_area is False
    assert plan_region(BOARD, region("f", "external", 0x20000, b"abc")).any_area is True


def test_corrupted_byte_is_resent_and_lands_identical(make_core: Callable[..., VirtualCore]) -> None:
    core = make_core(["corrupt@3000"])
    fl = SerialFlasher(core.endpoints["serial"].port, BOARD)  # type: ignore[attr-defined]
    data = os.urandom(20_000)
    r = region("d", "external", 0x80000, data)
    rep = fl.write_region(r, data, lambda d, t: None)
    assert rep.retries >= 1
    assert fl.device_digest(r) == (r.crc32, r.sha256)
    assert core.state.external.read(0x80000, len(data)) == data
    fl.close()


def test_reset_mid_write_is_retried_to_an_identical_result(make_core: Callable[..., VirtualCore]) -> None:
    core = make_core(["reset@5"])
    fl = SerialFlasher(core.endpoints["serial"].port, BOARD, reconnect_s=5)  # type: ignore[attr-defined]
    data = os.urandom(30_000)
    r = region("d", "external", 0x90000, data)
    rep = fl.write_region(r, data, lambda d, t: None)
    assert rep.retries >= 1 and core.endpoints["serial"].resets == 1  # type: ignore[attr-defined]
    assert fl.device_digest(r) == (r.crc32, r.sha256)
    assert core.state.external.read(0x90000, len(data)) == data
    fl.close()


def test_device_vanishing_mid_transfer_fails_clearly_and_marks_nothing_done(
        make_core: Callable[..., VirtualCore], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    core = make_core(["drop@20000"])
    port = core.endpoints["serial"].port  # type: ignore[attr-defined]
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(60_000))
    rc = main(["flash", str(f), "--address", "0x80000", "--via", "serial", "--port", port, "--json",
               "--timeout", "2"])
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    done = [e for e in events if e["event"] == "region-done"]
    assert rc == 4 and done[0]["status"] == "failed"  # DeviceError
    assert "big.bin" in done[0]["error"] and "0x00080000" in done[0]["error"]
    assert "vanished" in done[0]["error"] or "did not come back" in done[0]["error"]
    assert not Path(port).exists()


def test_oversize_firmware_is_cancelled_by_the_device(serial_core: VirtualCore) -> None:
    """Stock `f` refuses a header over 0x1B000 with CAN CAN and its text; nothing is installed."""
    from sparkflash.protocols import ymodem as Y
    from sparkflash.transports.drive import drive

    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    before = serial_core.state.internal.read(0x08005000, 0x1000)
    link = open_serial(port)
    try:
        link.drain_input()
        link.write(b"f")
        sender = Y.Sender("fw.bin", bytes(0x1B001))
        with pytest.raises(RemoteProtocolError, match=r"receiver cancelled \(CAN CAN\) at the file header"):
            drive(link, sender, lambda ev: None)
        text = sender.take_rest()
        for _ in range(20):
            if L.FW_TOO_BIG.encode() in text:
                break
            text += link.read(256, 0.1)
        assert L.FW_TOO_BIG.encode() in text
    finally:
        link.close()
    assert serial_core.state.internal.read(0x08005000, 0x1000) == before
    assert ask(port, b"ID\n").startswith("OK ")  # back in listening mode


def test_host_cancel_ends_the_device_session_cleanly(serial_core: VirtualCore) -> None:
    from sparkflash.protocols import ymodem as Y
    from sparkflash.transports.drive import drive

    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    link = open_serial(port)
    seen = []

    def stop_half_way(ev: object) -> None:
        if isinstance(ev, Y.Progress) and ev.done >= 8192:
            seen.append(ev.done)
            raise KeyboardInterrupt

    try:
        link.drain_input()
        link.write(L.encode_save(0x80000, 20_000))
        with pytest.raises(KeyboardInterrupt):
            drive(link, Y.Sender("x", os.urandom(20_000)), stop_half_way, initial=b"")
        text = b""
        for _ in range(20):
            if b"\n" in text:
                break
            text += link.read(256, 0.1)
        assert b"ERR 4 YMODEM: sender cancelled" in text
    finally:
        link.close()
    assert seen and ask(port, b"ID\n").startswith("OK ")


def test_flash_failure_on_the_device_is_reported_never_done(serial_core: VirtualCore, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A sector that will not erase: the device cancels with ERR 3; every attempt fails the same way."""
    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    serial_core.state.external.protected = ((0x91000, 0x92000),)
    f = tmp_path / "stuck.bin"
    f.write_bytes(os.urandom(0x3000))
    rc = main(["flash", str(f), "--address", "0x90000", "--via", "serial", "--port", port, "--json"])
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    (done,) = [e for e in events if e["event"] == "region-done"]
    assert rc == 5 and done["status"] == "failed"  # RemoteProtocolError: the device refused
    assert "region 'stuck.bin' at 0x00090000: failed after 3 attempts" in done["error"]
    assert "ERR 3 sector 0x00091000 is write-protected" in done["error"]


def test_a_verified_deploy_writes_the_release_record_and_it_refuses_a_downgrade_from_any_host(
        serial_core: VirtualCore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The device's REC (not a host's ledger) is what another SPARKFLASH_HOME checks."""
    import hashlib

    from sparkflash.manifest.build import build_release
    from sparkflash.manifest.keys import generate_key, load_signer
    from sparkflash.manifest.release import sign_manifest

    pub, _ = generate_key(tmp_path / "keys" / "release.pem")
    yaml = ("name: recdemo\nversion: \"{v}\"\nboard: spark-core\nregions:\n"
            "  - name: blob\n    memory: external\n    address: 0x90000\n    source: {{file: blob.bin}}\n")
    (tmp_path / "blob.bin").write_bytes(os.urandom(5000))
    manifests = {}
    for v in ("2.0.0", "1.0.0"):
        (tmp_path / f"rel-{v}.yaml").write_text(yaml.format(v=v))
        m = build_release(tmp_path / f"rel-{v}.yaml", tmp_path / f"out-{v}").manifest_path
        sign_manifest(m, load_signer(tmp_path / "keys" / "release.pem"))
        manifests[v] = m
    port = serial_core.endpoints["serial"].port  # type: ignore[attr-defined]
    assert main(["deploy", str(manifests["2.0.0"]), "--via", "serial", "--port", port, "--trust", str(pub)]) == 0
    sha = hashlib.sha256(manifests["2.0.0"].read_bytes()).hexdigest()
    assert ask(port, b"REC\n") == f"OK recdemo 2.0.0 {sha}"
    monkeypatch.setenv("SPARKFLASH_HOME", str(tmp_path / "another-host"))  # no ledger there
    capsys.readouterr()
    rc = main(["deploy", str(manifests["1.0.0"]), "--via", "serial", "--port", port, "--trust", str(pub), "--json"])
    last = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert rc == 2 and "records as installed" in last["error"], last
    assert ask(port, b"REC\n") == f"OK recdemo 2.0.0 {sha}"
