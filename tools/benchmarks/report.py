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
    "build": "Build (issue 12): SCons vs the core-firmware makefiles of three tree sets",
    "serial": "Serial (issue 4): YMODEM over a modelled 115,200-baud line",
    "dfu": "DFU (issue 5): DfuSe writes with the Core's poll timeouts",
    "ota": "OTA (issues 6, 14): the real Device OS v0.4.9 code over a modelled 100 ms / 1 Mbit/s link",
    "reconnect": "Reconnect storm (issue 14): 1,000 devices handshaking at once on this machine's cores",
    "parallel": "Parallel deploys (issue 15): four virtual Cores at once vs one",
    "agent": "Device agent (issue 13): its cost linked into spark_11 (`scons AGENT=1`)",
    "fleet": "Fleet (issue 17): 1,000 light devices over 2 instances behind HAProxy, PostgreSQL",
}
HINTS = {"build": "the tree-set figures come from `tools/bench build`, which unpacks spark_11, flasher and flasher_hal "
                   "from ../shared/peers (`--sets` chooses; `--core-firmware PATH` adds one more tree).",
         "agent": "the linked cost comes from spark_11 of ../shared/peers (or `tools/bench agent --core-firmware PATH`)."}
#: the real tree sets of ../shared/peers that tools/bench build measures beside their makefiles (issue 12)
TREE_SETS = ("spark_11", "flasher", "flasher_hal")
PLOTS = {"throughput": "throughput.png", "ota_aggregate": "ota_aggregate.png", "speedups": "speedups.png",
         "fleet_rollout": "fleet_rollout.png"}
REPO = Path(__file__).resolve().parents[2]


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
    *(t for name in TREE_SETS for t in (
        Target("build", f"{name} clean -j2: scons time / make time", f"tree_sets.{name}.clean_j2_scons_over_make.median",
               "<=", 1.0, "#12"),
        Target("build", f"{name} one-file edit: scons time / make time", f"tree_sets.{name}.one_file_scons_over_make.median",
               "<=", 1.15, "#12"),
        Target("build", f"{name} fresh clone, warm CACHE_DIR: make clean -j2 time / scons time",
               f"tree_sets.{name}.make_clean_j2_over_scons_warm_cache.median", ">=", 5.0, "#12"),
        Target("build", f"{name} .bin byte-identical to the makefile's", f"tree_sets.{name}.bin_identical", "==", True,
               "#12"),
    )),
    Target("serial", "ours: throughput / line rate", "ours_link_model.fraction_of_line_rate", ">=", 0.90, "#4"),
    Target("dfu", "SPI write: dfu-util pattern time / ours", "write_spi.speedup", ">=", 1.8, "#5"),
    Target("dfu", "one-byte change in 1.5 MiB: full write time / ours", "one_sector_change.speedup", ">=", 20, "#5"),
    Target("ota", "fast OTA: throughput / link rate", "fast.link_fraction", ">=", 0.80, "#6"),
    Target("ota", "fast OTA / stop-and-wait throughput", "fast_over_stop_and_wait", ">=", 10, "#6"),
    Target("ota", "real Device OS code: fast OTA / stop-and-wait throughput, 108 KiB firmware",
           "fast_over_stop_and_wait", ">=", 20, "#14"),
    Target("ota", "64 KiB to 100 real-code devices at once: aggregate throughput / one link (issue sets no "
           "figure: at least one link's worth)", "aggregate.100.aggregate_over_one_link", ">=", 1.0, "#14"),
    Target("reconnect", "1,000 devices reconnecting at once, RSA in 2 workers: seconds until all handshaken",
           "rsa_workers_2.all_handshaken_s", "<=", 3.0, "#14"),
    Target("dfu", "real dfu-util / ours through virtual-core --usb, 256 KiB SPI",
           "real_dfu_util_usb.external.dfu_util_over_ours", ">=", 1.8, "#15"),
    Target("dfu", "real dfu-util / ours through virtual-core --usb, 100 KiB internal",
           "real_dfu_util_usb.internal.dfu_util_over_ours", ">=", 1.45, "#15"),
    Target("parallel", "4 Cores at once / one Core, DFU", "dfu.four_over_one", "<=", 1.2, "#15"),
    Target("parallel", "4 Cores at once / one Core, serial", "serial.four_over_one", "<=", 1.2, "#15"),
    Target("agent", "agent flash in spark_11 (bytes, kept sections)", "agent_flash", "<=", 6144, "#13"),
    Target("agent", "agent RAM in spark_11 (bytes)", "agent_ram", "<=", 1536, "#13"),
    Target("fleet", "1,000 light devices over 2 instances behind HAProxy: all connected (s)", "all_connected_s", "<=", 5.0,
           "#17"),
    Target("fleet", "idle memory per connected device, instances' RSS (KiB)", "idle_kib_per_device", "<=", 20.0, "#17"),
    Target("fleet", "instance SIGKILLed: its devices handshaken again elsewhere, all connected, the store agrees",
           "kill.nothing_lost", "==", True, "#17"),
    Target("fleet", "64 KiB rollout in 3 phases, an instance SIGKILLed mid-rollout: devices that got it (acknowledged "
           "or verified)", "rollout.succeeded", ">=", 1000, "#17"),
    Target("fleet", "the same rollout: devices failed", "rollout.failed", "==", 0, "#17"),
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
    ex = r.get("example") or {}
    rows = [("example: clean -j1 / clean -j2 (parallel speedup)", _ratio(ex.get("clean_j1_s"), ex.get("clean_j2_s"))),
            ("example: one-file rebuild / clean -j2", _ratio(ex.get("one_file_rebuild_s"), ex.get("clean_j2_s"))),
            ("example: no-op / clean -j2", _ratio(ex.get("noop_s"), ex.get("clean_j2_s")))]
    trees = [(name, lookup(r, f"tree_sets.{name}")) for name in TREE_SETS]
    if r.get("core_firmware") and not any(t is r["core_firmware"] for _, t in trees):
        trees.append(("--core-firmware tree", r["core_firmware"]))
    for name, t in trees:
        if not t:
            continue
        rows += [(f"{name} one-file edit: plain scons (no launcher) time / make time",
                  lookup(t, "one_file_plain_scons_over_make.median")),
                 (f"{name} no-op: scons time / make time", lookup(t, "noop_scons_over_make.median")),
                 (f"{name} clean -j2: scons CPU / make CPU (medians)",
                  _ratio(lookup(t, "scons.clean_j2_cpu_s"), lookup(t, "make.clean_j2_cpu_s"))),
                 (f"{name} one-file edit: scons CPU / make CPU (medians)",
                  _ratio(lookup(t, "scons.one_file_rebuild_cpu_s"), lookup(t, "make.one_file_rebuild_cpu_s"))),
                 (f"{name} no-op scons, this machine (s)", lookup(t, "scons.noop_s"))]
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
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
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
PASS_COLOR, FAIL_COLOR, INFO_COLOR = "#2e7d32", "#c62828", "#9e9e9e"


class Bar(NamedTuple):
    """One bar: a ratio as its target defines it (never inverted), its target if it has one."""

    label: str
    value: float
    op: str | None = None  # the target's comparison, None for a ratio without a target
    limit: float | None = None

    @property
    def color(self) -> str:
        if self.op is None or self.limit is None:
            return INFO_COLOR
        ok = {"<": self.value < self.limit, "<=": self.value <= self.limit, ">=": self.value >= self.limit,
              "==": self.value == self.limit}[self.op]
        return PASS_COLOR if ok else FAIL_COLOR


def _bars(ax: Any, rows: list[Bar], ylabel: str, title: str) -> None:
    ax.bar(range(len(rows)), [b.value for b in rows], color=[b.color for b in rows])
    top = max([b.value for b in rows] + [b.limit or 0 for b in rows])
    for i, b in enumerate(rows):
        verdict = "" if b.op is None else (" pass" if b.color == PASS_COLOR else " FAIL")
        ax.annotate(f"{b.value:.3g}{verdict}", (i, b.value), ha="center", va="bottom", fontsize=8, color=b.color,
                    fontweight="bold" if verdict == " FAIL" else "normal")
        if b.limit is not None:
            ax.hlines(b.limit, i - 0.4, i + 0.4, colors="black", linestyles="dashed")
    ax.set_ylim(0, top * 1.25)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([b.label + ("" if b.op is None else f"\n(target {b.op} {b.limit:g})") for b in rows],
                       fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=10)


def _plot_rows(results: dict[str, Any]) -> dict[str, list[Bar]]:
    """throughput: fractions of each link; the other keys: one panel per benchmark, its targets
    first (as the target states them), then its ratios without a target (grey)."""

    def num(bench: str, path: str) -> float | None:
        v = lookup(results.get(bench), path)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def bar(label: str, value: float | None, op: str | None = None, limit: float | None = None) -> list[Bar]:
        return [] if value is None else [Bar(label, value, op, limit)]

    throughput = (bar("serial: ours", num("serial", "ours_link_model.fraction_of_line_rate"), ">=", 0.90)
                  + bar("serial: ours + flash timing", num("serial", "ours_link_and_flash_timing.fraction_of_line_rate"))
                  + bar("serial: lrzsz sb -k", num("serial", "lrzsz_sb_k_link_model.fraction_of_line_rate"))
                  + bar("OTA: fast", num("ota", "fast.link_fraction"), ">=", 0.80)
                  + bar("OTA: stop-and-wait", num("ota", "stop_and_wait.link_fraction")))
    dfu_write = (bar("SPI write:\ndfu-util time / ours", num("dfu", "write_spi.speedup"), ">=", 1.8)
                 + bar("internal write:\ndfu-util time / ours", num("dfu", "write_internal.speedup")))
    dfu_change = bar("1-byte change in 1.5 MiB:\nfull write / ours", num("dfu", "one_sector_change.speedup"), ">=", 20.0)
    ota = bar("fast / stop-and-wait\nthroughput", num("ota", "fast_over_stop_and_wait"), ">=", 10.0)
    build = [b for name in TREE_SETS for b in (
        bar(f"{name} clean -j2:\nscons time / make time", num("build", f"tree_sets.{name}.clean_j2_scons_over_make.median"),
            "<=", 1.0)
        + bar(f"{name} one-file edit:\nscons time / make time",
              num("build", f"tree_sets.{name}.one_file_scons_over_make.median"), "<=", 1.15))]
    build += bar("example clean:\n-j1 time / -j2 time", _ratio(num("build", "example.clean_j1_s"),
                                                                 num("build", "example.clean_j2_s")))
    return {"throughput": throughput, "dfu_write": dfu_write, "dfu_change": dfu_change, "ota": ota, "build": build}


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
    if rows["throughput"]:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        _bars(ax, rows["throughput"], "fraction of the link limit",
              "Throughput per transport (green pass, red FAIL, grey: no target; dashed: target)")
        ax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        fig.savefig(out / PLOTS["throughput"], dpi=100)
        plt.close(fig)
        written.append(PLOTS["throughput"])
    panels = [(key, title) for key, title in (("dfu_write", "DFU writes (#5)"), ("dfu_change", "DFU skip (#5)"),
                                              ("ota", "OTA (#6)"), ("build", "Build (#12)")) if rows[key]]
    if panels:  # one panel per target's scale: ratios of different kinds never share an axis
        fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels) + 1, 4.5), squeeze=False,
                                 gridspec_kw={"width_ratios": [len(rows[k]) + 0.6 for k, _ in panels]})
        for ax, (key, title) in zip(axes[0], panels, strict=True):
            _bars(ax, rows[key], "ratio (x)", title)
        fig.suptitle("Speedups and ratios against their targets (green pass, red FAIL, grey: no target)", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / PLOTS["speedups"], dpi=100)
        plt.close(fig)
        written.append(PLOTS["speedups"])
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
    fleet_plot = _fleet_timeline(plt, results, out)
    if fleet_plot:
        written.append(fleet_plot)
    return written, None


def _fleet_timeline(plt: Any, results: dict[str, Any], out: Path) -> str | None:
    """The fleet rollout's members over time: succeeded, claimed, pending; each phase's start and the kill."""
    ro = lookup(results.get("fleet"), "rollout") or {}
    points = ro.get("timeline") or []
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    t = [p["t"] for p in points]
    for key, style in (("succeeded", "-"), ("claimed", "--"), ("pending", ":"), ("failed", "-.")):
        ax.plot(t, [p.get(key, 0) for p in points], style, label=key)
    for ph in ro.get("phases", []):
        if ph.get("start_s") is not None:
            ax.axvline(ph["start_s"], color="grey", linewidth=0.8)
            ax.annotate(f"phase {ph['phase']} ({ph['percent']:g} %)", (ph["start_s"], 0), rotation=90, fontsize=7,
                        va="bottom", ha="right")
    killed = [p["t"] for p in points if p.get("kill")]
    if killed:
        ax.axvline(killed[0], color="red", linewidth=1.2, label="instance SIGKILLed")
    ax.set_xlabel("seconds since the rollout was created")
    ax.set_ylabel("devices")
    ax.set_title(f"Fleet rollout of {ro.get('devices', '?')} devices over 2 instances: members by state", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PLOTS["fleet_rollout"], dpi=100)
    plt.close(fig)
    return PLOTS["fleet_rollout"]


def _relative_paths(doc: Any) -> Any:
    """Figures as RESULTS.md may show them: no absolute path of this machine (a temporary
    checkout means nothing elsewhere). Inside the repository: relative to it; outside: the
    last component, marked as outside."""
    if isinstance(doc, dict):
        return {k: _relative_paths(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_relative_paths(v) for v in doc]
    if isinstance(doc, str) and os.path.isabs(doc) and len(doc) > 1:
        p = Path(doc)
        try:
            return p.resolve().relative_to(REPO).as_posix()
        except ValueError:
            return f"<outside the repository>/{p.name}"
    return doc


def write(results: dict[str, Any], out: Path) -> None:
    """bench/RESULTS.md (+ PNG plots) from {name: run([]) result}; tolerant of missing parts."""
    out.mkdir(parents=True, exist_ok=True)
    results = _relative_paths(results)
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
