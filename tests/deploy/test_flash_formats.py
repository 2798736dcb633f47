"""`sparkflash flash`: Intel HEX and ELF inputs, ADDR FILE pairs, text and vector-table refusals, no ledger (#15)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cli import main
from sparkflash.deploy.flash_input import adhoc_release, load_pieces, parse_targets
from sparkflash.deploy.run import Ledger
from sparkflash.errors import InputError
from sparkflash.virtual.core import CoreOptions, VirtualCore

APP = 0x08005000


@pytest.fixture
def core(core_dir: Path) -> Any:
    c = VirtualCore(core_dir, CoreOptions(dfu_poll=False, endpoints=("dfu",))).start()
    try:
        yield c
    finally:
        c.stop()


def flash(core: VirtualCore, *argv: str) -> int:
    return main(["flash", "--via", "dfu", "--device", f"virtual:{core.state.path}", "--json", *argv])


def result(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    out = capsys.readouterr().out.splitlines()
    doc: dict[str, Any] = json.loads(out[-1])
    return doc


def writes(core: VirtualCore) -> int:
    return core.state.internal.program_count + core.state.external.program_count


def test_the_issues_hex_at_the_application_address_is_decoded(core: VirtualCore, app_image: Any,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's command wrote the ASCII of the .hex and said "verified"; now the records are decoded."""
    assert flash(core, "--address", "0x08005000", str(app_image.hex)) == 0
    want = app_image.bin.read_bytes()  # objcopy -O binary of the same ELF: the reference
    assert core.state.internal.read(APP, len(want)) == want
    (dep,) = result(capsys)["deployments"]
    assert [(r["address"], r["size"], r["status"]) for r in dep["regions"]] == [(APP, len(want), "verified")]


def test_hex_forced_raw_is_refused_before_any_write(core: VirtualCore, app_image: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = writes(core)
    assert flash(core, "--format", "bin", "--address", "0x08005000", str(app_image.hex)) == 2
    err = capsys.readouterr().err
    assert "Intel HEX text" in err and str(app_image.hex) in err
    assert writes(core) == before and core.state.internal.read(APP, 16) == b"\xff" * 16


def test_hex_renamed_bin_is_still_recognised_by_content(tmp_path: Path, app_image: Any) -> None:
    renamed = tmp_path / "firmware.bin"
    renamed.write_bytes(app_image.hex.read_bytes())
    kind, pieces = load_pieces(renamed, None)
    assert kind == "hex" and pieces[0].address == APP and pieces[0].data == app_image.bin.read_bytes()


@pytest.mark.parametrize("data", [b":\xb5" + bytes(range(98)), b":" + b"\x00" * 99, b":0A\xff\xfe"],
                         ids=["colon-then-binary", "colon-then-zeros", "short-hex-then-binary"])
def test_a_binary_that_starts_with_a_colon_stays_raw(tmp_path: Path, data: bytes) -> None:
    """One random file in 256 starts with ':' (0x3A): without newlines it is still not Intel HEX."""
    f = tmp_path / "d.bin"
    f.write_bytes(data)
    kind, pieces = load_pieces(f, 0x90000)
    assert kind == "bin" and pieces[0].data == data


def test_elf_loads_segments_at_their_load_addresses(core: VirtualCore, app_image: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    kind, pieces = load_pieces(app_image.elf, None)
    want = app_image.bin.read_bytes()
    # .text and .data's load image (LMA right after .text) become one piece; .bss is not loaded
    assert kind == "elf" and [(p.address, p.data) for p in pieces] == [(APP, want)]
    assert struct.pack("<I", 0x12345678) in want
    assert flash(core, str(app_image.elf)) == 0
    assert core.state.internal.read(APP, len(want)) == want
    assert result(capsys)["ok"] is True


def test_esptool_style_pairs_and_a_self_addressed_elf(core: VirtualCore, tmp_path: Path, app_image: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "font.bin", tmp_path / "web.pack"
    da, db = os.urandom(5000), os.urandom(300)
    a.write_bytes(da)
    b.write_bytes(db)
    assert flash(core, "0x80000", str(a), "0x100000", str(b), str(app_image.elf)) == 0
    ext = core.state.external
    assert ext.read(0x80000, len(da)) == da and ext.read(0x100000, len(db)) == db
    regions = result(capsys)["deployments"][0]["regions"]
    assert [(r["region"], r["address"], r["status"]) for r in regions] == [
        ("font.bin", 0x80000, "verified"), ("web.pack", 0x100000, "verified"), ("app.elf", APP, "verified")]


def test_address_option_still_works(core: VirtualCore, tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(os.urandom(100))
    assert flash(core, str(f), "--address", "0x90000") == 0
    assert core.state.external.read(0x90000, 100) == f.read_bytes()


@pytest.mark.parametrize(("items", "address", "message"), [
    (["0x80000"], None, "has no FILE after it"),
    (["a.bin", "b.bin"], 0x80000, "exactly one FILE"),
])
def test_bad_target_lists(items: list[str], address: int | None, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_targets(items, address)


def test_raw_binary_needs_an_address(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"\x80" * 64)
    with pytest.raises(InputError, match="raw binary needs an address"):
        adhoc_release(parse_targets([str(f)], None), "spark-core", tmp_path / "s")


def test_hex_given_another_address_is_refused(tmp_path: Path, app_image: Any) -> None:
    with pytest.raises(InputError, match=r"starts at 0x08005000, not at the given 0x00080000"):
        adhoc_release([(0x80000, app_image.hex)], "spark-core", tmp_path / "s")


def test_overlapping_pieces_are_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"\x80" * 0x1000)
    b.write_bytes(b"\x81" * 16)
    with pytest.raises(InputError, match=r"b.bin: 0x00080ff0..0x00081000 overlaps .*a.bin"):
        adhoc_release([(0x80000, a), (0x80FF0, b)], "spark-core", tmp_path / "s")


def test_ascii_text_is_refused_unless_allowed(core: VirtualCore, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("wifi=home\npassword=secret\n" * 10)
    before = writes(core)
    assert flash(core, "0x90000", str(notes)) == 2
    assert "is ASCII text" in capsys.readouterr().err and writes(core) == before
    assert flash(core, "--allow-text", "0x90000", str(notes)) == 0
    assert core.state.external.read(0x90000, notes.stat().st_size) == notes.read_bytes()


@pytest.mark.parametrize(("head", "message"), [
    (struct.pack("<II", 0x08005000, 0x08005131), "initial SP 0x08005000 is not a word address in RAM"),
    (struct.pack("<II", 0x20005000, 0x08005130), "reset handler 0x08005130 is not an odd"),
    (struct.pack("<II", 0x20005000, 0x00080001), "reset handler 0x00080001"),
    (b"\x00\x01", "too short for a vector table"),
])
def test_application_address_needs_a_vector_table(tmp_path: Path, head: bytes, message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "app.bin"
    f.write_bytes(head + (b"\x80" * 64 if len(head) >= 8 else b""))
    # refused before the (absent) device is opened: the error is about the image, exit 2
    assert main(["flash", "--via", "dfu", "--device", f"virtual:{tmp_path}/none", "--address", "0x08005000",
                 str(f)]) == 2
    err = capsys.readouterr().err
    assert message in err and "0x08005000" in err and "would not boot" in err


def test_elf_for_another_machine_is_refused(tmp_path: Path) -> None:
    import sys

    with pytest.raises(InputError, match="not an Arm"):
        load_pieces(Path(sys.executable).resolve(), None, "elf")


def test_flash_stays_out_of_the_release_ledger(core: VirtualCore, tmp_path: Path, signed_example: tuple[Path, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """#15: flashing example.bin recorded a release "example" 0.0.0 and refused the next deploy.
    (Only a signed release names a ledger entry: an unsigned one's name vouches for nothing.)"""
    example_release, pub = signed_example
    f = tmp_path / "example.bin"
    f.write_bytes(os.urandom(4096))
    assert flash(core, "0x80000", str(f)) == 0
    device = result(capsys)["deployments"][0]["device"]
    ledger = Ledger()
    assert not (ledger.root / "devices").exists()
    argv = ["deploy", str(example_release), "--via", "dfu", "--device", f"virtual:{core.state.path}",
            "--trust", str(pub), "--json"]
    assert main(argv) == 0
    doc = result(capsys)
    assert ledger.last(device, doc["deployments"][0]["release"]) == doc["deployments"][0]["version"]
