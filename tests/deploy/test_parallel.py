"""Parallel deploys: several --device / --port values at once, events tagged, one summary (#15 point 5)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cli import main
from sparkflash.manifest.release import open_release
from sparkflash.virtual.core import CoreOptions, VirtualCore


@pytest.fixture
def cores(tmp_path: Path) -> Iterator[list[VirtualCore]]:
    out = [VirtualCore(tmp_path / f"core{i}", CoreOptions(dfu_poll=False)).start() for i in range(4)]
    try:
        yield out
    finally:
        for c in out:
            c.stop()


def events(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def check_flashed(cores: list[VirtualCore], manifest: Path, memory: str | None = None) -> None:
    rel = open_release(manifest, None, require_signature=False)
    for c in cores:
        for r in rel.manifest.regions:
            if memory is None or r.memory == memory:
                flash = c.state.internal if r.memory == "internal" else c.state.external
                assert flash.read(r.address, r.size) == rel.blob(r), (c.state.path, r.name)


def test_four_cores_by_dfu_at_once(cores: list[VirtualCore], example_release: Path,
                                   capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen_threads: set[str] = set()
    from sparkflash.deploy import run as deploy_run

    real = deploy_run.deploy_release

    def spy(*a: Any, **kw: Any) -> Any:
        seen_threads.add(threading.current_thread().name)
        return real(*a, **kw)

    monkeypatch.setattr("sparkflash.deploy.dfu.deploy_release", spy)
    targets = [f"virtual:{c.state.path}" for c in cores]
    argv = ["deploy", str(example_release), "--no-verify-signature", "--via", "dfu", "--json"]
    for t in targets:
        argv += ["--device", t]
    assert main(argv) == 0
    evs = events(capsys)
    result = evs[-1]
    assert result["event"] == "result" and result["ok"] and len(result["deployments"]) == 4
    assert {d["device"] for d in result["deployments"]} == {c.state.info["device_id"] for c in cores}
    # every event but the result names the target it belongs to; each target got its own whole story
    for t in targets:
        mine = [e["event"] for e in evs[:-1] if e["target"] == t]
        assert mine[0] == "deploy-start" and mine[-1] == "deploy-done" and mine.count("region-done") == 3
    assert all("target" in e for e in evs[:-1])
    assert len(seen_threads) == 4 and all(n.startswith("deploy-virtual:") for n in seen_threads)
    check_flashed(cores, example_release)


def test_four_cores_by_serial_at_once(cores: list[VirtualCore], example_release: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["deploy", str(example_release), "--no-verify-signature", "--via", "serial", "--json",
            "--memory", "external"]
    for c in cores:
        argv += ["--port", str(c.state.path / "tty")]
    assert main(argv) == 0
    result = events(capsys)[-1]
    assert result["ok"] and [d["ok"] for d in result["deployments"]] == [True] * 4
    check_flashed(cores, example_release, "external")


def test_one_missing_device_fails_alone(cores: list[VirtualCore], example_release: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["deploy", str(example_release), "--no-verify-signature", "--via", "serial", "--json",
            "--memory", "external", "--port", str(cores[0].state.path / "tty"), "--port", str(tmp_path / "nope")]
    assert main(argv) == 4
    evs = events(capsys)
    ok, bad = evs[-1]["deployments"]
    assert ok["ok"] and not bad["ok"] and bad["device"] == str(tmp_path / "nope")
    assert all(r["status"] == "failed" and "nope" in r["error"] for r in bad["regions"])
    assert any(e["event"] == "deploy-done" and e["target"] == str(tmp_path / "nope") and not e["ok"] for e in evs)
    check_flashed(cores[:1], example_release, "external")


def test_bars_one_per_device(cores: list[VirtualCore], example_release: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json: one bar per device (tqdm writes them to stderr), one summary line."""
    argv = ["deploy", str(example_release), "--no-verify-signature", "--via", "dfu"]
    for c in cores:
        argv += ["--device", f"virtual:{c.state.path}"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "Done: 4 devices, 4 verified, 0 failed" in err
    for c in cores:
        assert f"virtual:{c.state.path}: firmware: verified" in err
