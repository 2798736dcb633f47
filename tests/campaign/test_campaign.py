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

import pytest

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


def _dfu_campaign(tmp_path: Path, name: str, *args: str) -> tuple[dict[str, int], list[dict[str, object]]]:
    out, log = tmp_path / f"{name}.json", tmp_path / f"{name}.jsonl"
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "campaign"), "--via", "dfu", "--seed", "21", *args,
                        "--json", str(out), "--log", str(log)], capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(out.read_text())["results"]["dfu"], [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.slow  # two dfu campaigns: ~40 s on a loaded machine
def test_parallel_runs_each_have_their_record_and_the_table_adds_them_up(tmp_path: Path) -> None:
    """--jobs 3: one log line per run, the table is the sum of the runs as with --jobs 1, and each
    run draws its fault from its own seed, so --only reproduces a run alone with the same fault."""
    table, runs = _dfu_campaign(tmp_path, "parallel", "--runs", "3", "--jobs", "3")
    assert sorted(int(str(run["run"])) for run in runs) == [0, 1, 2]
    assert table["runs"] == table["faults"] == table["runs requested"] == 3
    assert table.get("faults landed", 0) == sum(bool(run["landed"]) for run in runs)
    assert table.get("regions verified", 0) == sum(int(str(run["verified"])) for run in runs)
    assert table.get("reruns completed", 0) == 3 and table.get("silent corruptions", 0) == 0
    assert table["tracebacks"] == 0 and table["hung"] == 0
    kinds = [str(run["fault"]).split("@")[0].strip("['") for run in runs]
    for kind in ("drop", "corrupt", "reset", "kill"):
        assert table.get(f"{kind} faults", 0) == kinds.count(kind), kind
    assert table.get("reruns on the same Core process", 0) == kinds.count("kill")
    assert {"calibration rx bytes", "calibration ms", "calibration programs, max per flash", "seconds"} <= set(table)
    alone, [one] = _dfu_campaign(tmp_path, "alone", "--only", "2")
    assert alone["runs"] == 1 and alone.get("reruns completed", 0) == 1
    twin = next(run for run in runs if run["run"] == 2)
    same = str(one["fault"]).split("=")[0] == str(twin["fault"]).split("=")[0]  # a kill: the same fraction of the transfer
    assert (one["run"], one["run_seed"], same) == (2, twin["run_seed"], True), (one, twin)
