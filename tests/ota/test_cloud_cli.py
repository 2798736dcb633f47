"""The command line end to end: keygen, register, `cloud serve` as a process, `deploy --via ota --json`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sparkflash.cli import main
from sparkflash.virtual.core import CoreOptions, VirtualCore


def test_keygen_register_serve_deploy(make_release: Callable[..., Any], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "server.der"
    assert main(["cloud", "keygen", "--out", str(key)]) == 0
    assert len((tmp_path / "server.der.pub").read_bytes()) == 294
    assert main(["cloud", "keygen", "--out", str(key)]) == 2  # never silently replaced
    devices = tmp_path / "devices"
    proc = subprocess.Popen([sys.executable, "-m", "sparkflash", "cloud", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--admin", "127.0.0.1:0", "--key", str(key), "--devices", str(devices), "--json",
                             "--insecure-unsigned"],
                            stdout=subprocess.PIPE, text=True)
    core = None
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        port = int(info["devices"].rsplit(":", 1)[1])
        state = tmp_path / "core"
        assert main(["cloud", "register", str(state), "--devices", str(devices), "--server-key", str(key) + ".pub",
                     "--server", f"127.0.0.1:{port}", "--save-begin"]) == 0
        ident = json.loads((state / "core.json").read_text())["device_id"]
        assert json.loads((devices / f"{ident}.json").read_text()) == {"save_begin": True}
        # a 0.3.x-protocol Core with the flasher_additions library and the agent
        opts = CoreOptions(endpoints=("cloud",), extra={"cloud_dialect": "ccl", "cloud_save_begin": True})
        core = VirtualCore(state, opts).start()
        assert core.endpoints["cloud"].connected.wait(20)  # type: ignore[attr-defined]
        data = os.urandom(10_000)
        store = tmp_path / "store"
        rel = make_release(store, [("file", 0x100000, data)])
        (store / "manifest.json").write_bytes(rel.raw)
        capsys.readouterr()
        rc = main(["deploy", str(store / "manifest.json"), "--no-verify-signature", "--via", "ota",
                   "--device", core.state.info["device_id"], "--cloud", info["admin"], "--json",
                   "--cloud-token", info["token_file"]])
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


def test_deploy_via_ota_needs_a_device(make_release: Callable[..., Any], tmp_path: Path) -> None:
    rel = make_release(tmp_path, [("file", 0x80000, b"abc")])
    (tmp_path / "manifest.json").write_bytes(rel.raw)
    assert main(["deploy", str(tmp_path / "manifest.json"), "--no-verify-signature", "--via", "ota"]) == 2


def test_example_release_signed_and_deployed_over_the_air(tmp_path: Path, make_core: Any, cloud: Any,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """manifests/example.yaml (firmware + font at 0x80000 + web at 0x100000), built and signed
    by the CLI, deployed by `deploy --via ota` with the signature checked, every region verified."""
    import struct

    root = Path(__file__).resolve().parents[2]
    fw = tmp_path / "firmware.bin"
    fw.write_bytes(struct.pack("<II", 0x20005000, 0x08005101) + os.urandom(30_000))  # a vector table, then code
    key = tmp_path / "dev.pem"
    assert main(["keys", "generate", str(key)]) == 0
    out = tmp_path / "release"
    assert main(["manifest", "build", str(root / "manifests" / "example.yaml"), "--firmware", str(fw),
                 "--out", str(out), "--key", str(key)]) == 0
    core = make_core(cloud_dialect="ccl", cloud_save_begin=True)  # files need flasher_additions
    assert core.endpoints["cloud"].connected.wait(20)
    capsys.readouterr()
    url = "http://{}:{}".format(*cloud.admin_addr[:2])
    rc = main(["deploy", str(out / "manifest.json"), "--trust", str(tmp_path / "dev.pub.pem"), "--via", "ota",
               "--device", core.state.info["device_id"], "--cloud", url, "--json"])
    cap = capsys.readouterr()
    lines = [json.loads(ln) for ln in cap.out.splitlines()]
    assert rc == 0, lines[-1] if lines else cap.err[-2000:]
    regions = lines[-1]["deployments"][0]["regions"]
    assert [(r["region"], r["status"]) for r in regions] == [("firmware", "verified"), ("font", "verified"), ("web", "verified")]
    assert core.state.internal.read(0x08005000, fw.stat().st_size) == fw.read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    for r in manifest["regions"]:
        mem = core.state.internal if r["memory"] == "internal" else core.state.external
        assert hashlib.sha256(mem.read(r["address"], r["size"])).hexdigest() == r["sha256"]


def test_require_verified_exit_code(make_release: Callable[..., Any], make_core: Any, cloud: Any, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Stock firmware (no agent): 'booted' is success by default, exit 3 with --require-verified."""
    core = make_core(cloud_agent=False)
    assert core.endpoints["cloud"].connected.wait(20)
    store = tmp_path / "store"
    rel = make_release(store, [("firmware", 0x08005000, struct_fw())])
    (store / "manifest.json").write_bytes(rel.raw)
    url = "http://{}:{}".format(*cloud.admin_addr[:2])
    base = ["deploy", str(store / "manifest.json"), "--no-verify-signature", "--via", "ota", "--allow-downgrade",
            "--device", core.state.info["device_id"], "--cloud", url, "--json"]
    capsys.readouterr()
    assert main(base) == 0
    doc = json.loads(capsys.readouterr().out.splitlines()[-1])
    [region] = doc["deployments"][0]["regions"]
    assert region["status"] == "booted" and "bootloader" in region["proves"]
    assert main([*base, "--require-verified"]) == 3
    doc = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert doc["ok"] is False and doc["deployments"][0]["regions"][0]["status"] == "booted"


def struct_fw() -> bytes:
    import struct

    return struct.pack("<II", 0x20005000, 0x08005101) + os.urandom(6000)
