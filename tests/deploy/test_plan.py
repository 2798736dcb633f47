"""`sparkflash plan` and `deploy --dry-run`: the plan a deploy then follows, and nothing written (#15 point 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cli import main
from sparkflash.manifest.release import open_release
from sparkflash.virtual.core import CoreOptions, VirtualCore


@pytest.fixture
def core(core_dir: Path) -> Any:
    c = VirtualCore(core_dir, CoreOptions(dfu_poll=False)).start()
    try:
        yield c
    finally:
        c.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(list(argv)) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out.splitlines()[-1])
    return doc


def writes(core: VirtualCore) -> tuple[int, int]:
    s = core.state
    return s.internal.program_count + s.external.program_count, s.internal.erase_count + s.external.erase_count


def test_dfu_plan_is_what_the_deploy_then_does(core: VirtualCore, example_release: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = [str(example_release), "--no-verify-signature", "--via", "dfu", "--device", f"virtual:{core.state.path}",
           "--json"]
    before = writes(core)
    plan = run(capsys, "plan", *src)
    assert writes(core) == before  # reading only
    (p,) = plan["plans"]
    assert [r["device_read"] for r in p["regions"]] == [True] * 3
    assert all(r["write"] == r["sectors"] and r["skip"] == 0 for r in p["regions"])  # a blank Core
    assert all(r["erase"] == 0 for r in p["regions"])  # blank sectors need no erase
    dep = run(capsys, "deploy", *src)
    for planned, done in zip(p["regions"], dep["deployments"][0]["regions"], strict=True):
        assert (planned["region"], planned["bytes_to_send"], planned["skip"], planned["erase"]) == (
            done["region"], done["bytes_sent"], done["sectors_skipped"], done["sectors_erased"])

    # one byte changed on the device: one sector to erase and rewrite, the rest skipped
    rel = open_release(example_release, None, require_signature=False)
    font = next(r for r in rel.manifest.regions if r.name == "font")
    sector = bytearray(rel.blob(font)[4096:8192])
    sector[904] ^= 0xFF
    core.state.external.erase_sector(font.address + 4096)
    core.state.external.program(font.address + 4096, bytes(sector))
    before = writes(core)
    again = run(capsys, "deploy", "--dry-run", *src)["plans"][0]
    assert writes(core) == before  # a dry run writes nothing
    f = next(r for r in again["regions"] if r["region"] == "font")
    assert (f["write"], f["erase"], f["skip"]) == (1, 1, f["sectors"] - 1)
    assert others_unchanged(again["regions"], "font")
    assert again["totals"]["bytes_to_send"] == f["bytes_to_send"] > 0 and again["totals"]["seconds"] > 0


def others_unchanged(regions: list[dict[str, Any]], changed: str) -> bool:
    return all(r["write"] == 0 and r["bytes_to_send"] == 0 for r in regions if r["region"] != changed)


def test_plan_without_a_device_counts_every_sector(example_release: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for via in ("dfu", "serial", "ota"):
        doc = run(capsys, "plan", str(example_release), "--no-verify-signature", "--via", via, "--json")
        (p,) = doc["plans"]
        assert doc["dry_run"] and p["device"] == "(no device)"
        for r in p["regions"]:
            assert not r["device_read"] and r["write"] == r["sectors"] > 0 and r["skip"] == 0, (via, r)
            assert r["seconds"] > 0 and r["bytes_to_send"] > 0


def test_serial_plan_asks_the_devices_digest(core: VirtualCore, example_release: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    port = str(core.state.path / "tty")
    src = [str(example_release), "--no-verify-signature", "--via", "serial", "--port", port, "--json",
           "--memory", "external"]
    first = run(capsys, "plan", *src)["plans"][0]["regions"]
    assert all(r["device_read"] and r["skip"] == 0 and r["write"] == r["sectors"] for r in first)
    run(capsys, "deploy", *src)
    second = run(capsys, "plan", *src)["plans"][0]["regions"]
    assert all(r["device_read"] and r["write"] == 0 and r["skip"] == r["sectors"] and r["bytes_to_send"] == 0
               for r in second)


def test_the_link_model_scales_with_bytes() -> None:
    from sparkflash.deploy.link_model import DfuLink, SerialLinkModel

    s = SerialLinkModel(115200)
    assert s.wire_bytes(1024) == 133 + 1029 + 2 + 133
    assert s.seconds(payload=100 * 1024, erases=25) > 10 * s.seconds(payload=8 * 1024, erases=2)
    d = DfuLink()
    # the Core's poll timeouts dominate: 100 SPI blocks cost at least 100 x 30 ms
    assert d.seconds("external", erases=0, blocks=100, read_bytes=0) >= 3.0
