"""The bench plots read at a glance: each target's ratio as the target states it (never
inverted), in green when it passes and red when it fails, ratios of different kinds on
separate axes; and RESULTS.md records no absolute path of the machine that ran it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report_plots_under_test", ROOT / "tools/benchmarks/report.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


RESULTS = {
    "build": {"tree_sets": {"flasher": {"tree": "/tmp/xyz/core-firmware", "clean_j2_scons_over_make": {"median": 1.05}}},
              "example": {"clean_j1_s": 4.0, "clean_j2_s": 2.0}},
    "dfu": {"write_spi": {"speedup": 1.83}, "write_internal": {"speedup": 1.39}, "one_sector_change": {"speedup": 123}},
    "ota": {"fast_over_stop_and_wait": 22.2, "fast": {"link_fraction": 0.7}},
}


def test_fail_is_red_pass_is_green_and_nothing_is_inverted(report: ModuleType) -> None:
    rows = report._plot_rows(RESULTS)
    build = {b.label: b for b in rows["build"]}
    fail = next(b for b in build.values() if "scons time / make time" in b.label)
    assert (fail.value, fail.op, fail.limit, fail.color) == (1.05, "<=", 1.0, report.FAIL_COLOR)
    assert next(b for b in rows["dfu_write"] if b.label.startswith("SPI")).color == report.PASS_COLOR
    assert next(b for b in rows["throughput"] if b.label == "OTA: fast").color == report.FAIL_COLOR  # 0.7 < 0.8
    assert next(b for b in rows["dfu_write"] if b.label.startswith("internal")).color == report.INFO_COLOR
    # the 123x skip and the 1.8x write never share one axis
    assert all(len({round(b.value) > 50 for b in panel}) == 1 for key, panel in rows.items() if key != "throughput")


def test_results_md_has_relative_paths_only(report: ModuleType, tmp_path: Path) -> None:
    report.write(RESULTS, tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "/tmp/" not in text and str(ROOT) not in text
    assert "<outside the repository>/core-firmware" in text
    assert not re.search(r"\]\(/", text), "a link with an absolute target"


def test_the_committed_record_has_no_absolute_path() -> None:
    for name in ("RESULTS.md", "results.json"):
        text = (ROOT / "bench" / name).read_text()
        assert not re.search(r"(?<![\w<])/(tmp|home|work|root|var)/", text), f"bench/{name} records an absolute path"
