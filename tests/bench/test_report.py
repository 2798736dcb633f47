"""tools/benchmarks/report.py turns one `tools/bench all` result into RESULTS.md and PNG plots.

Synthetic results with one target missed, one benchmark absent and one sub-run skipped:
the report must show every figure, each target's ratio with pass/FAIL/not measured, the
machine and the command, and write real PNG files.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    # loaded the way tools/bench loads it: from its path, not registered in sys.modules
    spec = importlib.util.spec_from_file_location("bench_report_under_test", ROOT / "tools/benchmarks/report.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def results() -> dict[str, Any]:
    return {
        "build": {"toolchain": "arm-none-eabi-gcc 12.2", "repeat": 3,
                  "example": {"clean_j1_s": 4.0, "clean_j2_s": 2.0, "noop_s": 0.25, "one_file_rebuild_s": 0.8,
                              "bin_bytes": 5120}},
        "serial": {"baud": 115200, "bytes": 65536, "line_rate_bytes_per_s": 11520,
                   "ours_link_model": {"seconds": 6.02, "bytes_per_s": 10886, "fraction_of_line_rate": 0.945,
                                       "verified": True},
                   "ours_link_and_flash_timing": {"seconds": 6.3, "bytes_per_s": 10402,
                                                  "fraction_of_line_rate": 0.903, "verified": True},
                   "lrzsz_sb_k_link_model": {"skipped": "lrzsz or socat not installed"}, "target_fraction": 0.9},
        "dfu": {"poll_timeouts": "Core: internal 50 ms; SPI 20 ms erase, 30 ms otherwise (dfu_poll on)",
                "write_spi": {"bytes": 262144, "dfu_util_pattern_s": 9.1, "ours_s": 6.5, "speedup": 1.4,
                              "ours_poll_wait_s": 6.0},
                "write_internal": {"bytes": 16384, "dfu_util_pattern_s": 2.0, "ours_s": 1.0, "speedup": 2.0},
                "one_sector_change": {"bytes": 1572864, "full_write_s": 40.0, "full_sectors_erased": 384,
                                      "one_byte_change_s": 1.0, "one_change_sectors_erased": 1,
                                      "one_change_sectors_skipped": 383, "speedup": 40.0}},
        "ota": {"link": {"rtt_s": 0.1, "mbit_s": 1.0, "bytes_s": 125000.0}, "size": 307200,
                "fast": {"write_s": 2.9, "verify_s": 0.3, "bytes_s": 105931, "link_fraction": 0.847},
                "stop_and_wait": {"write_s": 64.0, "verify_s": 0.3, "bytes_s": 4800, "link_fraction": 0.038},
                "fast_over_stop_and_wait": 22.1,
                "aggregate": {"1": {"devices": 1, "bytes_each": 65536, "wall_s": 0.7, "aggregate_bytes_s": 93623,
                                    "per_device_link_fraction": 0.749},
                              "10": {"devices": 10, "bytes_each": 65536, "wall_s": 1.1, "aggregate_bytes_s": 595782,
                                     "per_device_link_fraction": 0.477},
                              "100": {"devices": 100, "bytes_each": 65536, "wall_s": 9.0,
                                      "aggregate_bytes_s": 728177, "per_device_link_fraction": 0.058}}},
    }


def row(text: str, label: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("|") and label in line]
    assert lines, f"no table row for {label!r}"
    return lines[0]


def test_results_md_has_every_figure_target_and_verdict(report: ModuleType, tmp_path: Path) -> None:
    res = results()
    report.write(res, tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    # machine and command
    assert f"{os.cpu_count()} CPUs" in text and "Python: 3." in text and "`tools/bench all`" in text
    assert "UTC" in text
    # targets beside their ratios: pass, FAIL (DFU SPI 1.4 < 1.8), and not measured (no core-firmware run)
    assert "| pass |" in row(text, "ours: throughput / line rate (#4)")
    assert "0.945" in row(text, "ours: throughput / line rate (#4)")
    spi = row(text, "SPI write: dfu-util pattern time / ours (#5)")
    assert "1.4" in spi and ">= 1.8" in spi and "| FAIL |" in spi
    assert "| pass |" in row(text, "one-byte change in 1.5 MiB")
    assert "| pass |" in row(text, "fast OTA: throughput / link rate (#6)")
    assert "| pass |" in row(text, "fast OTA / stop-and-wait throughput (#6)")
    for name in ("spark_11", "flasher", "flasher_hal"):  # no tree set in these results
        assert "not measured" in row(text, f"{name} clean -j2: scons time / make time (#12)")
    assert "unpacks spark_11, flasher and flasher_hal from ../shared/peers" in text
    # derived ratios
    assert "| 2 |" in row(text, "example: clean -j1 / clean -j2")
    assert "5.83" in row(text, "100 devices: aggregate throughput / one link")  # 728177 / 125000
    # every raw figure is listed
    for bench, doc in res.items():
        for key, _value in report._flatten(doc):
            assert f"`{key}`" in text, f"{bench}: figure {key} missing"
    assert "Skipped" not in text or "lrzsz or socat not installed" in text
    # one section per benchmark, in order
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert [h for h in heads if "(issue" in h] == [f"## {report.TITLES[n]}" for n in ("build", "serial", "dfu", "ota")]
    assert json.loads((tmp_path / "results.json").read_text()) == res


def test_plots_are_png_files_linked_from_the_report(report: ModuleType, tmp_path: Path) -> None:
    if os.environ.get("CI"):  # tools/setup installs the bench extra: a missing one fails there
        import matplotlib  # noqa: F401
    pytest.importorskip("matplotlib")
    report.write(results(), tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    for name in ("throughput.png", "ota_aggregate.png", "speedups.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
        assert f"]({name})" in text


def test_missing_benchmarks_are_reported_not_guessed(report: ModuleType, tmp_path: Path) -> None:
    res = {"serial": results()["serial"]}
    report.write(res, tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    for name in ("dfu", "ota", "build"):
        assert f"Not measured: `tools/bench {name}` did not run" in text
    assert "not measured" in row(text, "fast OTA: throughput / link rate (#6)")
    assert not (tmp_path / "ota_aggregate.png").exists()
    assert (tmp_path / "throughput.png").exists()  # serial alone still has a throughput bar


def test_lookup_and_verdict(report: ModuleType) -> None:
    t = report.Target("ota", "x", "fast.link_fraction", ">=", 0.8, "#6")
    assert report.verdict(t, {"ota": {"fast": {"link_fraction": 0.79}}}) == (0.79, "FAIL")
    assert report.verdict(t, {"ota": {"fast": {"link_fraction": 0.8}}}) == (0.8, "pass")
    assert report.verdict(t, {"ota": {"fast": {}}}) == (None, "not measured")
    assert report.verdict(t, {"ota": {"fast": {"link_fraction": "n/a"}}}) == ("n/a", "not measured")
    assert report.lookup({"a": {"b": 1}}, "a.b") == 1 and report.lookup({"a": 1}, "a.b") is None
