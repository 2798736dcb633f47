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
                       capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    record = json.loads(out.read_text())
    assert record["seed"] == 3 and record["runs_per_mode"] == 2
    table = record["results"]
    assert set(table) == {"serial", "dfu", "ota", "s3"}
    for via, counts in table.items():
        assert counts["runs"] == 2 and counts["faults"] == 2, via
        assert 0 <= counts.get("faults landed", 0) <= 2, via
        assert counts.get("silent corruptions", 0) == 0, via
        assert counts.get("reruns completed", 0) == 2, via
        assert counts.get("hung", 0) == 0 and counts.get("deploys failed, no message", 0) == 0, via
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 8 and all(run["rerun_ok"] for run in runs)
    assert "silent corruptions" in r.stdout and "faults landed" in r.stdout  # the table is printed
    assert "faults landed during a transfer" in r.stderr
    kills = [run for run in runs if str(run["fault"]).startswith("kill")]
    assert sum(t.get("reruns on the same Core process", 0) for t in table.values()) == len(kills)


def test_fuzz_takes_its_seed_from_the_environment_and_records_it() -> None:
    import os

    env = {**os.environ, "SPARKFLASH_FUZZ_SEED": "424242"}
    r = subprocess.run([str(ROOT / "tools" / "fuzz"), "--collect-only", "-q", "tests/manifest/test_manifest_fuzz.py"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "seed 424242" in r.stderr
    log = (ROOT / "build" / "fuzz" / "seeds.log").read_text().splitlines()
    assert "seed=424242 exit=0" in log[-1]
    bad = subprocess.run([str(ROOT / "tools" / "fuzz")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SPARKFLASH_FUZZ_SEED": "x; rm -rf /"}, cwd=ROOT, check=False)
    assert bad.returncode == 2 and "must be a decimal integer" in bad.stderr


def test_the_manifest_fuzzer_follows_the_profile_and_the_fuzz_profile_is_seeded() -> None:
    """The fuzz profile (tools/fuzz) must not be derandomized, or --hypothesis-seed is ignored;
    the manifest fuzzer must not pin derandomize itself (it used to pin True)."""
    from hypothesis import settings

    sys.path.insert(0, str(ROOT / "tests" / "manifest"))
    import test_manifest_fuzz

    assert settings.get_profile("fuzz").derandomize is False
    assert test_manifest_fuzz.FUZZ.derandomize == settings.default.derandomize
