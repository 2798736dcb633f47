"""The fault campaign, small: every transport and the S3 stop, a few random faults each.

tools/campaign --runs 300 is the full campaign (see README); CI runs this reduced one. The
campaign itself decides what is a silent corruption (a region reported done whose bytes on
the virtual core differ from the signed blob), so this test checks its verdict and counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_campaign_has_no_silent_corruption_and_every_rerun_completes(tmp_path: Path) -> None:
    out = tmp_path / "campaign.json"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "campaign"), "--runs", "2", "--seed", "3",
                        "--json", str(out), "--log", str(tmp_path / "runs.jsonl")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    table = json.loads(out.read_text())
    assert set(table) == {"serial", "dfu", "ota", "s3"}
    for via, counts in table.items():
        assert counts["runs"] == 2, via
        assert counts.get("silent corruptions", 0) == 0, via
        assert counts.get("reruns completed", 0) == 2, via
        assert counts.get("hung", 0) == 0 and counts.get("deploys failed, no message", 0) == 0, via
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 8 and all(run["rerun_ok"] for run in runs)
    assert "silent corruptions" in r.stdout  # the table is printed
