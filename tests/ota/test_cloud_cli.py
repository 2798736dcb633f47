"""The command line end to end: keygen, register, `cloud serve` as a process, `deploy --via ota --json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparkflash.cli import main
from sparkflash.virtual.core import CoreOptions, VirtualCore

from .conftest import make_release


def test_keygen_register_serve_deploy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "server.der"
    assert main(["cloud", "keygen", "--out", str(key)]) == 0
    assert len((tmp_path / "server.der.pub").read_bytes()) == 294
    assert main(["cloud", "keygen", "--out", str(key)]) == 2  # never silently replaced
    devices = tmp_path / "devices"
    proc = subprocess.Popen([sys.executable, "-m", "sparkflash", "cloud", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--admin", "127.0.0.1:0", "--key", str(key), "--devices", str(devices), "--json"],
                            stdout=subprocess.PIPE, text=True)
    core = None
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        port = int(info["devices"].rsplit(":", 1)[1])
        state = tmp_path / "core"
        assert main(["cloud", "register", str(state), "--devices", str(devices), "--server-key", str(key) + ".pub",
                     "--server", f"127.0.0.1:{port}"]) == 0
        core = VirtualCore(state, CoreOptions(endpoints=("cloud",))).start()
        assert core.endpoints["cloud"].connected.wait(20)  # type: ignore[attr-defined]
        data = os.urandom(10_000)
        store = tmp_path / "store"
        rel = make_release(store, [("file", 0x100000, data)])
        (store / "manifest.json").write_bytes(rel.raw)
        capsys.readouterr()
        rc = main(["deploy", str(store / "manifest.json"), "--no-verify-signature", "--via", "ota",
                   "--device", core.state.info["device_id"], "--cloud", info["admin"], "--json"])
        lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
        assert rc == 0, lines[-1]
        assert lines[-1]["event"] == "result" and lines[-1]["ok"] is True
        assert {ln["event"] for ln in lines} >= {"deploy-start", "region-start", "progress", "region-done", "deploy-done"}
        assert core.state.external.read(0x100000, len(data)) == data
    finally:
        if core is not None:
            core.stop()
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_deploy_via_ota_needs_a_device(tmp_path: Path) -> None:
    rel = make_release(tmp_path, [("file", 0x80000, b"abc")])
    (tmp_path / "manifest.json").write_bytes(rel.raw)
    assert main(["deploy", str(tmp_path / "manifest.json"), "--no-verify-signature", "--via", "ota"]) == 2
