"""Rollouts through the server, its admin API and the CLI, on SQLite and on PostgreSQL alike.

Light devices (fleet.lightcore, with the agent: digests, so "verified") connect to a real
CloudServer on the test's database; the release is fetched by the server from a real S3
server. Every check of a device reads its memory, and every rollout figure comes from the
server's own status."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cli import main
from sparkflash.fleet.lightcore import MemoryFlash
from sparkflash.fleet.rollout import bucket


def cli(capsys: pytest.CaptureFixture[str], fleet: Any, token: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    rc = main([*argv, "--cloud", fleet.admin, "--cloud-token", str(token), "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return rc, json.loads(out[-1])


@pytest.fixture
def token(fleet: Any, tmp_path: Path) -> Path:
    p = tmp_path / "admin-token"
    p.write_text(fleet.server.token + "\n")
    return p


@pytest.fixture
def release(publish_release: Any) -> tuple[str, bytes]:
    data = os.urandom(8192)
    return publish_release(f"r-{uuid.uuid4().hex[:8]}", "3.1.0", data), data


def test_phased_rollout_by_label_reaches_every_device(fleet: Any, token: Path, release: tuple[str, bytes],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ref, data = release
    north = fleet.add(10, prefix="a1", labels=("north",))
    south = fleet.add(2, prefix="a2", labels=("south",))
    rc, doc = cli(capsys, fleet, token, "rollout", "create", ref, "--id", "web-3-1", "--label", "north",
                  "--phase", "10:1.0", "--phase", "50:1.0", "--phase", "100:90%")
    assert rc == 0 and doc["rollout"]["id"] == "web-3-1"
    assert [p["devices"] for p in doc["rollout"]["phases"]] == [1, 4, 5]  # ceil(10 x 10 %), then to 50 %, then the rest
    rc, doc = cli(capsys, fleet, token, "rollout", "status", "web-3-1", "--wait", "60")
    st = doc["rollout"]
    assert rc == 0 and st["state"] == "done", st
    assert [p["state"] for p in st["phases"]] == ["passed"] * 3
    assert sorted(d["device"] for d in st["devices"]) == sorted(d.id for d in north)
    assert all(d["status"] == "succeeded" and [r["status"] for r in d["detail"]["regions"]] == ["verified"]
               for d in st["devices"])
    assert all(d.flash.read(0x80000, len(data)) == data for d in north)
    assert all(d.flash.sectors == {} for d in south)  # not targeted: never written
    rc, doc = cli(capsys, fleet, token, "cloud", "devices", "--label", "north")
    assert rc == 0 and len(doc["devices"]) == 10
    assert all(d["release"]["version"] == "3.1.0" and d["generation"] == "ccl" and "save_begin" in d["capabilities"]
               for d in doc["devices"])
    rc, doc = cli(capsys, fleet, token, "rollout", "list")
    assert rc == 0 and [(r["id"], r["state"]) for r in doc["rollouts"]] == [("web-3-1", "done")]


def test_a_rollout_pauses_itself_past_its_threshold_then_resume_and_abort(fleet: Any, token: Path,
                                                                           release: tuple[str, bytes],
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Two Device OS devices cannot take a file (refused before any byte): in a phase that allows no
    failure the rollout pauses itself; a resume that accepts them finishes; one that retries them
    pauses again, and an abort ends it."""
    ref, data = release
    good = fleet.add(4, prefix="b1", labels=("west",))
    bad = fleet.add(2, prefix="b2", labels=("west",), dialect="os", agent=False)
    rc, doc = cli(capsys, fleet, token, "rollout", "create", ref, "--id", "strict", "--label", "west", "--phase", "100:1.0")
    assert rc == 0
    rc, doc = cli(capsys, fleet, token, "rollout", "status", "strict", "--wait", "60")
    st = doc["rollout"]
    assert st["state"] == "paused" and "success threshold allows" in st["reason"], st
    assert st["phases"][0]["state"] == "paused" and st["phases"][0]["failure_budget"] == 0
    # transfers under way when it paused still report; wait for them, then every bad device has failed
    rc, doc = cli(capsys, fleet, token, "rollout", "resume", "strict")
    assert rc == 0
    rc, doc = cli(capsys, fleet, token, "rollout", "status", "strict", "--wait", "60")
    st = doc["rollout"]
    assert st["state"] == "done", st
    by = {d["device"]: d for d in st["devices"]}
    assert all(by[d.id]["status"] == "succeeded" for d in good) and all(by[d.id]["status"] == "failed" for d in bad)
    assert all("Device OS" in by[d.id]["detail"]["regions"][0]["error"] for d in bad)
    assert all(d.flash.read(0x80000, len(data)) == data for d in good) and all(d.flash.sectors == {} for d in bad)

    rc, doc = cli(capsys, fleet, token, "rollout", "create", ref, "--id", "again", "--label", "west", "--phase", "100:1.0",
                  "--allow-downgrade")
    rc, doc = cli(capsys, fleet, token, "rollout", "status", "again", "--wait", "60")
    assert doc["rollout"]["state"] == "paused"
    rc, doc = cli(capsys, fleet, token, "rollout", "resume", "again", "--retry-failed")
    rc, doc = cli(capsys, fleet, token, "rollout", "status", "again", "--wait", "60")
    assert doc["rollout"]["state"] == "paused", doc  # the same devices failed again
    assert max(d["attempts"] for d in doc["rollout"]["devices"]) == 2
    rc, doc = cli(capsys, fleet, token, "rollout", "abort", "again")
    assert rc == 0 and doc["rollout"]["state"] == "aborted"
    rc, doc = cli(capsys, fleet, token, "rollout", "pause", "again")
    assert rc == 2 and "aborted" in doc["error"]
    events = [e.kind for e in fleet.server.db.events(rollout_id="again", limit=1000)]
    assert events.count("rollout-paused") == 2 and events[-1] == "rollout-aborted"


def test_a_manual_pause_hands_out_no_work(fleet: Any, token: Path, release: tuple[str, bytes],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Paused while the canary (phase 1) is still writing: its outcome is recorded, but phase 2's devices
    stay waiting until the resume."""
    ref, data = release
    devs = fleet.add(4, prefix="c1")
    canary = min(devs, key=lambda d: bucket("slow", d.id))  # the rollout's first device, by its fixed place
    gate = Gate()
    canary.flash = gate  # taken by its next connection
    before = canary.stats.handshakes
    fleet.loop.loop.call_soon_threadsafe(canary.drop)
    end = time.monotonic() + 20
    while not (canary.stats.handshakes > before and canary.id in fleet.server.sessions):
        assert time.monotonic() < end, "the canary did not reconnect"
        time.sleep(0.05)
    argv = [a for d in devs for a in ("-d", d.id)]
    rc, doc = cli(capsys, fleet, token, "rollout", "create", ref, "--id", "slow", *argv, "--phase", "25:1.0",
                  "--phase", "100:1.0")
    assert rc == 0 and [p["devices"] for p in doc["rollout"]["phases"]] == [1, 3]
    assert gate.held.wait(30)
    rc, doc = cli(capsys, fleet, token, "rollout", "pause", "slow")
    assert rc == 0 and doc["rollout"]["state"] == "paused"
    gate.release.set()
    end = time.monotonic() + 30
    while (st := fleet.client.call("GET", "/v1/rollouts/slow"))["phases"][0]["counts"].get("succeeded") != 1:
        assert time.monotonic() < end, st
        time.sleep(0.1)
    assert st["state"] == "paused" and [d["status"] for d in st["devices"] if d["phase"] == 2] == ["waiting"] * 3
    rc, doc = cli(capsys, fleet, token, "rollout", "resume", "slow")
    rc, doc = cli(capsys, fleet, token, "rollout", "status", "slow", "--wait", "60")
    assert doc["rollout"]["state"] == "done" and all(d.flash.read(0x80000, len(data)) == data for d in devs)


class Gate(MemoryFlash):
    """The first write blocks until released (the device's whole event loop waits with it)."""

    def __init__(self) -> None:
        super().__init__()
        self.held, self.release = threading.Event(), threading.Event()

    def write(self, address: int, data: bytes) -> bool:
        if not self.held.is_set():
            self.held.set()
            assert self.release.wait(30)
        return super().write(address, data)


def test_a_percentage_target_takes_the_devices_below_it(fleet: Any, token: Path, release: tuple[str, bytes],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    ref, data = release
    devs = fleet.add(8, prefix="d1", labels=("east",))
    rc, doc = cli(capsys, fleet, token, "rollout", "create", ref, "--id", "half", "--label", "east", "--percent", "50",
                  "--phase", "100:1.0")
    chosen = {d.id for d in devs if bucket("half", d.id) < 0.5}
    assert rc == 0 and {d["device"] for d in doc["rollout"]["devices"]} == chosen
    rc, doc = cli(capsys, fleet, token, "rollout", "status", "half", "--wait", "60")
    assert doc["rollout"]["state"] == "done"
    assert all((d.flash.read(0x80000, len(data)) == data) == (d.id in chosen) for d in devs)
