"""tools/fleet-demo as a user runs it: PostgreSQL, local S3, HAProxy, two instances, light devices, a
rollout through the instance that is then killed mid-rollout."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_fleet_demo_connects_moves_and_reports(tool: Callable[[str], str], tmp_path: Path) -> None:
    tool("haproxy")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "fleet-demo"), "-n", "30", "--no-setup", "--json",
                        "--dir", str(tmp_path / "demo")],
                       capture_output=True, text=True, timeout=240, check=False)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    s = json.loads(r.stdout)
    assert s["ok"] and s["connected"] == 30 and sum(s["held"].values()) == 30 and len(s["held"]) == 2
    assert s["release"].startswith("s3://demo/sparkflash/releases/example/")  # published to the local S3, signed
    k = s["kill"]
    assert k["nothing_lost"] and k["connected"] == 30 and k["handshaken_again"] >= k["devices_moved"] > 0
    assert set(k["held"]) == {"instance-a", "instance-b"} - {k["instance"]} and sum(k["held"].values()) == 30
    assert Path(s["run_dir"]).is_relative_to(tmp_path) and list(Path(s["run_dir"]).glob("instance-*.log"))
    r = s["rollout"]
    assert r["state"] == "done" and [p["percent"] for p in r["phases"]] == [1, 10, 100]
    assert [p["state"] for p in r["phases"]] == ["passed"] * 3 and r["succeeded"] == 30 and r["failed"] == 0
    assert r["via"] == k["instance"]  # created through the instance that was then killed
    assert [p["phase"] for p in r["timeline"]] == [1, 2, 3] and all(p["end_s"] is not None for p in r["timeline"])
