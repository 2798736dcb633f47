"""bench/RESULTS.md and its plots from one `tools/bench all` run.

Why a separate renderer: every benchmark returns raw figures measured side by side in one
run; the issues set their targets as ratios (fraction of the link, speedup over dfu-util's
pattern, scons over make), so this module turns figures into those ratios, puts each
beside its target with pass/FAIL, and records the machine, because the ratios, not the
seconds, are what carry over to another machine. Missing benchmarks (or figures a
benchmark skipped) are reported as "not measured", never guessed.

    write(results, out)   results = {"build": {...}, "serial": {...}, "dfu": {...}, "ota": {...}}
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Target", "TARGETS", "write", "lookup", "verdict"]

COMMAND = "tools/bench all"
NAMES = ("build", "serial", "dfu", "ota")
TITLES = {
    "build": "Build (issue 2): SCons vs the core-firmware makefiles",
    "serial": "Serial (issue 4): YMODEM over a modelled 115,200-baud line",
    "dfu": "DFU (issue 5): DfuSe writes with the Core's poll timeouts",
    "ota": "OTA (issue 6): cloud protocol over a modelled 100 ms / 1 Mbit/s link",
}
HINTS = {"build": "core-firmware figures come from `tools/bench build --core-firmware PATH` (a core-firmware tree "
                   "with its sibling libraries); `all` measures them only if its results include them."}
PLOTS = {"throughput": "throughput.png", "ota_aggregate": "ota_aggregate.png", "speedups": "speedups.png"}


class Target(NamedTuple):
    """One acceptance figure of an issue: a dotted path into that benchmark's results.
    (A NamedTuple, not a dataclass: tools/bench loads this file without registering it in
    sys.modules, which dataclasses need.)"""

    bench: str
    label: str
    path: str
    op: str  # ">=", "<=", "<", "=="
    limit: float | bool
    issue: str

    def check(self, value: Any) -> bool:
        if self.op == "==":
            return bool(value == self.limit)
        v, lim = float(value), float(self.limit)
        return {"<": v < lim, "<=": v <= lim, ">=": v >= lim}[self.op]


TARGETS = (
    Target("build", "core-firmware clean -j2: scons time / make time", "core_firmware.clean_j2_scons_over_make.median",
           "<=", 1.0, "#2"),
    Target("build", "core-firmware no-op scons at the spec machine's speed (s): scons/make no-op x 0.22 s",
           "core_firmware.noop_s_at_spec_speed", "<", 0.5, "#2"),
    Target("build", "core-firmware .bin byte-identical to the makefile's", "core_firmware.bin_identical", "==", True,
           "#2"),
    Target("serial", "ours: throughput / line rate", "ours_link_model.fraction_of_line_rate", ">=", 0.90, "#4"),
    Target("dfu", "SPI write: dfu-util pattern time / ours", "write_spi.speedup", ">=", 1.8, "#5"),
    Target("dfu", "one-byte change in 1.5 MiB: full write time / ours", "one_sector_change.speedup", ">=", 20, "#5"),
    Target("ota", "fast OTA: throughput / link rate", "fast.link_fraction", ">=", 0.80, "#6"),
    Target("ota", "fast OTA / stop-and-wait throughput", "fast_over_stop_and_wait", ">=", 10, "#6"),
)


def lookup(doc: Any, path: str) -> Any:
    """The value at a dotted path, or None if any step is missing."""
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def verdict(target: Target, results: dict[str, Any]) -> tuple[Any, str]:
    value = lookup(results.get(target.bench), target.path)
    if value is None:
        return None, "not measured"
    try:
        return value, "pass" if target.check(value) else "FAIL"
    except (TypeError, ValueError):
        return value, "not measured"


def _ratio(a: Any, b: Any) -> float | None:
    try:
        return round(float(a) / float(b), 3)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


# -- ratios beside the targets: what else each run tells (no target in the issues) ---------
def _build_ratios(r: dict[str, Any]) -> list[tuple[str, float | None]]:
    ex, cf = r.get("example") or {}, r.get("core_firmware") or {}
    rows = [("example: clean -j1 / clean -j2 (parallel speedup)", _ratio(ex.get("clean_j1_s"), ex.get("clean_j2_s"))),
            ("example: one-file rebuild / clean -j2", _ratio(ex.get("one_file_rebuild_s"), ex.get("clean_j2_s"))),
            ("example: no-op / clean -j2", _ratio(ex.get("noop_s"), ex.get("clean_j2_s")))]
    for k in ("clean_j1_s", "clean_j2_s", "noop_s", "one_file_rebuild_s"):
        rows.append((f"core-firmware {k[:-2]}: scons / make (medians)", _ratio(lookup(cf, f"scons.{k}"), lookup(cf, f"make.{k}"))))
    rows.append(("core-firmware no-op scons, this machine (s)", lookup(cf, "scons.noop_s")))
    return rows


def _serial_ratios(r: dict[str, Any]) -> list[tuple[str, float | None]]:
    return [("ours with flash timing: throughput / line rate", lookup(r, "ours_link_and_flash_timing.fraction_of_line_rate")),
            ("lrzsz sb -k: throughput / line rate", lookup(r, "lrzsz_sb_k_link_model.fraction_of_line_rate")),
            ("ours / lrzsz sb -k throughput", _ratio(lookup(r, "ours_link_model.bytes_per_s"),
                                                      lookup(r, "lrzsz_sb_k_link_model.bytes_per_s"))),
            ("real receiver (#19): ours, data phase / line rate",
             lookup(r, "real_receiver_link_model.ours.data_phase_fraction_of_line_rate")),
            ("real receiver (#19): sb -k, data phase / line rate",
             lookup(r, "real_receiver_link_model.sb_k.data_phase_fraction_of_line_rate")),
            ("real receiver (#19): whole session, ours time / sb -k time",
             lookup(r, "real_receiver_link_model.ours_over_sb_k_time"))]


def _dfu_ratios(r: dict[str, Any]) -> list[tuple[str, float | None]]:
    rows = [("internal write: dfu-util pattern time / ours", lookup(r, "write_internal.speedup"))]
    for part in ("write_spi", "write_internal"):
        rows.append((f"{part}: poll-timeout wait / total, ours", _ratio(lookup(r, f"{part}.ours_poll_wait_s"),
                                                                         lookup(r, f"{part}.ours_s"))))
    rows.append(("one-byte change: sectors rewritten / sectors in region",
                 _ratio(lookup(r, "one_sector_change.one_change_sectors_erased"),
                        lookup(r, "one_sector_change.full_sectors_erased"))))
    return rows


def _ota_ratios(r: dict[str, Any]) -> list[tuple[str, float | None]]:
    rate = lookup(r, "link.bytes_s")
    rows = [("stop-and-wait: throughput / link rate", lookup(r, "stop_and_wait.link_fraction")),
            ("fast: checksum verify time / write time", _ratio(lookup(r, "fast.verify_s"), lookup(r, "fast.write_s")))]
    for n, agg in sorted((r.get("aggregate") or {}).items(), key=lambda kv: int(kv[0])):
        rows.append((f"{n} devices: aggregate throughput / one link", _ratio(lookup(agg, "aggregate_bytes_s"), rate)))
        rows.append((f"{n} devices: slowest device throughput / its link", lookup(agg, "per_device_link_fraction")))
    return rows


RATIOS: dict[str, Callable[[dict[str, Any]], list[tuple[str, float | None]]]] = {
    "build": _build_ratios, "serial": _serial_ratios, "dfu": _dfu_ratios, "ota": _ota_ratios}


# -- markdown ---------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "not measured"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v).replace("|", "\\|")


def _flatten(doc: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(doc, dict):
        out: list[tuple[str, Any]] = []
        for k, v in doc.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, doc)]


def _machine() -> list[str]:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [f"- Date: {now}",
            f"- Machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} {platform.release()}",
            f"- Python: {sys.version.split()[0]} ({platform.python_implementation()})",
            f"- Command: `{COMMAND}` (regenerates this file, the plots and bench/results.json)"]


def _section(name: str, r: dict[str, Any] | None, results: dict[str, Any]) -> list[str]:
    lines = [f"## {TITLES.get(name, name)}", ""]
    if r is None:
        return lines + [f"Not measured: `tools/bench {name}` did not run (no tools/benchmarks/{name}.py).", ""]
    if "skipped" in r:
        lines += [f"Skipped: {r['skipped']}", ""]
    targets = [t for t in TARGETS if t.bench == name]
    if targets:
        lines += ["| target (issue) | measured | target | result |", "| --- | --- | --- | --- |"]
        for t in targets:
            value, v = verdict(t, results)
            lines.append(f"| {t.label} ({t.issue}) | {_fmt(value)} | {t.op} {_fmt(t.limit)} | {v} |")
        lines.append("")
        if name in HINTS and any(verdict(t, results)[1] == "not measured" for t in targets):
            lines += [f"Not measured: {HINTS[name]}", ""]
    derive = RATIOS.get(name)
    ratios = [(label, v) for label, v in (derive(r) if derive else []) if v is not None]
    if ratios:
        lines += ["| ratio (no target) | value |", "| --- | --- |"]
        lines += [f"| {label} | {_fmt(v)} |" for label, v in ratios]
        lines.append("")
    lines += ["<details><summary>Every figure of this run</summary>", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| `{k}` | {_fmt(v)} |" for k, v in _flatten(r)]
    return lines + ["", "</details>", ""]


def _summary(results: dict[str, Any]) -> list[str]:
    lines = ["## Targets at a glance", "", "| benchmark | target (issue) | measured | target | result |",
             "| --- | --- | --- | --- | --- |"]
    for t in TARGETS:
        value, v = verdict(t, results)
        lines.append(f"| {t.bench} | {t.label} ({t.issue}) | {_fmt(value)} | {t.op} {_fmt(t.limit)} | {v} |")
    return lines + [""]


# -- plots ------------------------------------------------------------------------------
def _bars(ax: Any, rows: list[tuple[str, float, float | None]], ylabel: str, title: str) -> None:
    labels = [label for label, _, _ in rows]
    ax.bar(range(len(rows)), [v for _, v, _ in rows], color="#4c72b0")
    for i, (_, v, target) in enumerate(rows):
        ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)
        if target is not None:
            ax.hlines(target, i - 0.4, i + 0.4, colors="#c44e52", linestyles="dashed")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title + " (dashed: target)", fontsize=10)


def _plot_rows(results: dict[str, Any]) -> dict[str, list[tuple[str, float, float | None]]]:
    def num(bench: str, path: str) -> float | None:
        v = lookup(results.get(bench), path)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    throughput = [("serial: ours", num("serial", "ours_link_model.fraction_of_line_rate"), 0.90),
                  ("serial: ours + flash timing", num("serial", "ours_link_and_flash_timing.fraction_of_line_rate"), None),
                  ("serial: lrzsz sb -k", num("serial", "lrzsz_sb_k_link_model.fraction_of_line_rate"), None),
                  ("OTA: fast", num("ota", "fast.link_fraction"), 0.80),
                  ("OTA: stop-and-wait", num("ota", "stop_and_wait.link_fraction"), None)]
    cf = results.get("build", {}).get("core_firmware") if isinstance(results.get("build"), dict) else None
    speedups = [("DFU SPI write\nvs dfu-util", num("dfu", "write_spi.speedup"), 1.8),
                ("DFU internal write\nvs dfu-util", num("dfu", "write_internal.speedup"), None),
                ("DFU 1-byte change\nvs full write", num("dfu", "one_sector_change.speedup"), 20.0),
                ("OTA fast\nvs stop-and-wait", num("ota", "fast_over_stop_and_wait"), 10.0),
                ("build example\n-j2 vs -j1", _ratio(num("build", "example.clean_j1_s"), num("build", "example.clean_j2_s")),
                 None),
                ("core-firmware clean -j2\nmake / scons", _ratio(1, lookup(cf, "clean_j2_scons_over_make.median")),
                 1.0)]
    return {"throughput": [(a, v, t) for a, v, t in throughput if v is not None],
            "speedups": [(a, v, t) for a, v, t in speedups if v is not None]}


def _plots(results: dict[str, Any], out: Path) -> tuple[list[str], str | None]:
    """Write the PNGs; (file names written, or the reason there are none)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed (pip install -e '.[bench]')"
    written: list[str] = []
    rows = _plot_rows(results)
    for key, ylabel, title in (("throughput", "fraction of the link limit", "Throughput per transport"),
                               ("speedups", "speedup (x)", "DFU, OTA and build speedups")):
        if rows[key]:
            fig, ax = plt.subplots(figsize=(8, 4.5))
            _bars(ax, rows[key], ylabel, title)
            if key == "speedups":
                ax.set_yscale("log")
            fig.tight_layout()
            fig.savefig(out / PLOTS[key], dpi=100)
            plt.close(fig)
            written.append(PLOTS[key])
    agg = lookup(results.get("ota"), "aggregate") or {}
    rate = lookup(results.get("ota"), "link.bytes_s")
    points: list[tuple[int, float, float]] = []
    for n, a in sorted(agg.items(), key=lambda kv: int(kv[0])):
        total, each = _ratio(lookup(a, "aggregate_bytes_s"), rate), _ratio(lookup(a, "per_device_link_fraction"), 1)
        if total is not None:
            points.append((int(n), total, float("nan") if each is None else each))
    if points:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([n for n, _, _ in points], [a for _, a, _ in points], "o-", label="aggregate / one link")
        ax.plot([n for n, _, _ in points], [p for _, _, p in points], "s--", label="slowest device / its link")
        ax.plot([n for n, _, _ in points], [n for n, _, _ in points], ":", color="grey", label="ideal (n links)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("devices updated at once")
        ax.set_ylabel("throughput in link rates")
        ax.set_title("OTA aggregate throughput vs device count", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / PLOTS["ota_aggregate"], dpi=100)
        plt.close(fig)
        written.append(PLOTS["ota_aggregate"])
    return written, None


def write(results: dict[str, Any], out: Path) -> None:
    """bench/RESULTS.md (+ PNG plots) from {name: run([]) result}; tolerant of missing parts."""
    out.mkdir(parents=True, exist_ok=True)
    plots, why_not = _plots(results, out)
    lines = ["# Benchmark results", "", "Every figure of the transport and build issues, measured side by side in one run "
             "and given as ratios beside the issue's target. Raw figures: [results.json](results.json).", ""]
    lines += _machine() + [""] + _summary(results)
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    else:
        lines += ["## Plots", "", f"No plots: {why_not or 'no figures to plot'}.", ""]
    for name in NAMES:
        lines += _section(name, results.get(name), results)
    for name in sorted(set(results) - set(NAMES)):
        lines += _section(name, results[name], results)
    (out / "RESULTS.md").write_text("\n".join(lines).rstrip() + "\n")
    if not (out / "results.json").exists():  # tools/bench writes it; a direct caller gets one too
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
