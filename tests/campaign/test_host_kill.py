"""A host killed mid-transfer, then a rerun against the SAME virtual Core (issue #16, point 6).

A real Core is not power-cycled because the host process died: it is left in the middle
of a YMODEM receive. The rerun must get through to it and complete, every region verified.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sparkflash.manifest.build import build_release
from sparkflash.manifest.keys import generate_key, load_signer
from sparkflash.manifest.release import sign_manifest
from sparkflash.virtual.core import CoreOptions, VirtualCore

BLOB = bytes(range(256)) * 256  # 64 KiB: ~6 s at 115200 baud


def _release(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(BLOB)
    (src / "release.yaml").write_text('name: kill\nversion: "1.0.0"\nboard: spark-core\nregions:\n'
                                      "  - name: big\n    memory: external\n    address: 0x80000\n"
                                      "    source: {file: big.bin}\n")
    pub, _ = generate_key(tmp_path / "k.pem")
    res = build_release(src / "release.yaml", tmp_path / "dist")
    sign_manifest(res.manifest_path, load_signer(tmp_path / "k.pem"))
    return tmp_path / "dist", pub


def test_a_rerun_after_a_killed_host_completes_on_the_same_core(tmp_path: Path) -> None:
    dist, pub = _release(tmp_path)
    with VirtualCore(tmp_path / "core", CoreOptions(endpoints=("serial",), baud=115200, timing=True)) as core:
        port = str(tmp_path / "core" / "tty")
        args = [sys.executable, "-m", "sparkflash", "deploy", str(dist), "--trust", str(pub), "--via", "serial",
                "--port", port, "--timeout", "15", "--json"]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ)
        assert p.stdout is not None
        for line in p.stdout:  # kill it once the transfer is under way
            if json.loads(line).get("event") == "region-start":
                break
        time.sleep(1.0)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        p.stdout.close()
        assert core.state.external.read(0x80000, len(BLOB)) != BLOB  # it really was cut short
        r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=os.environ, check=False)
        assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
        result = json.loads(r.stdout.splitlines()[-1])
        assert result["ok"] and [x["status"] for x in result["deployments"][0]["regions"]] == ["verified"]
        assert core.state.external.read(0x80000, len(BLOB)) == BLOB
