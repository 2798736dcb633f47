"""Build timings: clean -j1, clean -j2, no-op and one-file rebuild of the example; and for
each real tree set (spark_11, flasher, flasher_hal from ../shared/peers, or one tree given
with --core-firmware) scons beside the trees' own makefiles, ratios side by side: clean
-j2, one-file edit, no-op, and a full build of a fresh clone with a warm CACHE_DIR against
make's clean -j2; plus whether both .bin files are byte-identical. "scons" is
sparkflash-scons, the command docs/build.md gives (scons with its early compiles started
before SCons loads); the one-file edit also times plain `python -m SCons` in the same rounds.

    tools/bench build [--repeat N] [--sets spark_11,flasher,flasher_hal] [--core-firmware PATH]

Everything runs in temporary copies: the repository's build/ and the given trees are not
touched. Figures are medians of N runs (wall seconds); make and scons take turns in every
round (make first in odd rounds, scons first in even ones), and each scons/make ratio is
the median of the per-round ratios. A clean scons build is `rm -r build .sconsign*`
(as `make clean` removes make's objects); the per-user records of the toolchain's hashes,
of make's plan and of the last build's commands (sparkflash.firmware.buildcache) stay, as
a ccache directory would: each validates itself against the files it was made from (no
object is kept: a clean build compiles everything).
report.py turns the tree-set ratios into issue 12's target rows.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sparkflash.firmware.coretree import COMMON, COMMUNICATION
from sparkflash.firmware.toolchain import find_toolchain
from sparkflash.firmware.workspace import PEERS, clean_scons, make_checkout, run_make, run_scons, unpack_tree_set

TREE_SETS = ("spark_11", "flasher", "flasher_hal")
EXAMPLE_EDIT = "examples/core-firmware/src/application.cpp"
CORE_EDIT = "src/spark_wiring.cpp"
SPEC_MAKE_NOOP_S = 0.22  # shared/specs/core-firmware-build.md §7: the makefile's no-op -j2 there


#: scons as a developer runs it: Python caches the bytecode of the checkout's site_scons
#: after the first run. A session that exports PYTHONDONTWRITEBYTECODE=1 (this machine's
#: harness does) would otherwise recompile every module of the package on every run
#: (~30 ms of each no-op and one-file edit, nothing make pays).
SCONS_ENV = {"PYTHONDONTWRITEBYTECODE": ""}


def _scons(checkout: Path, *args: str, launcher: bool = True) -> Callable[[], None]:
    """A build as docs/build.md tells users to run it (sparkflash-scons), or plain scons."""
    def go() -> None:
        r = run_scons(checkout, *args, env=SCONS_ENV, launcher=launcher)
        if r.returncode:
            raise SystemExit(f"bench build: scons {' '.join(args)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

    return go


def _editor(path: Path) -> Callable[[], None]:
    """Each call changes one source so that its object (and so the link) really changes."""
    original = path.read_text()
    count = [0]

    def edit() -> None:
        count[0] += 1
        path.write_text(original + f"\nint sparkflash_bench_edit_{count[0]} = {count[0]};\n")

    return edit


def _nothing() -> None:
    return None


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _example(checkout: Path, repeat: int) -> dict[str, float]:
    clean, build = partial(clean_scons, checkout), _scons(checkout, "-j2")
    runs: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "clean_j1": (clean, _scons(checkout, "-j1")),
        "clean_j2": (clean, build),
        "noop": (_nothing, build),
        "one_file_rebuild": (_editor(checkout / EXAMPLE_EDIT), build),
    }
    figures: dict[str, float] = {}
    for name, run_ in runs.items():  # one kind at a time: each needs the previous state
        measured = _interleaved({name: run_}, repeat)
        figures[f"{name}_s"], figures[f"{name}_cpu_s"] = measured[name], measured[f"{name}_cpu"]
    return figures


def _make(firmware: Path, *args: str) -> Callable[[], None]:
    def go() -> None:
        r = run_make(firmware, *args)
        if r.returncode:
            raise SystemExit(f"bench build: make {' '.join(args)} in {firmware} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

    return go


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _interleaved(runs: dict[str, tuple[Callable[[], None], Callable[[], None]]], repeat: int) -> dict[str, float]:
    """Median wall time of each (prepare, run) pair, the pairs taking turns in every round so
    that make and scons see the same machine load, in the reverse order every other round
    (a machine slowing down or speeding up during a round favours neither); `<name>_cpu` is
    the median user+sys CPU time of the child processes, which load from other processes
    barely changes."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeat):
        for name, (prepare, go) in list(runs.items())[::-1 if round_ % 2 else 1]:
            prepare()
            t, c = time.perf_counter(), _children_cpu()
            go()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(_children_cpu() - c)
    result: dict[str, Any] = {name: round(statistics.median(v), 3) for name, v in times.items()}
    result.update({f"{name}_cpu": round(statistics.median(v), 3) for name, v in cpu.items()})
    result.update({f"{name}_runs": [round(t, 3) for t in v] for name, v in times.items()})
    return result


def _paired(measured: dict[str, Any], over: str, under: str) -> dict[str, Any]:
    """`over`/`under` time ratio of each round (the two ran back to back, under the same
    load) and their median, so the load drifting between rounds is visible, not averaged."""
    ratios = sorted(round(a / b, 3) for a, b in zip(measured[f"{over}_runs"], measured[f"{under}_runs"], strict=True))
    return {"median": round(statistics.median(ratios), 3), "rounds": ratios}


def _fresh_clone(template: Path, dest: Path) -> Callable[[], None]:
    """Before each warm-cache round: a new clone (no build/, no .sconsign) of the checkout."""
    def prepare() -> None:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(template, dest, ignore=shutil.ignore_patterns("build", ".sconsign*"), symlinks=True)

    return prepare


def _tree_set(source: Path, work: Path, repeat: int, label: str) -> dict[str, object]:
    """scons and make on two copies of one tree set, taking turns in every round."""
    for name in ("core-firmware", COMMON, COMMUNICATION):
        if not (source.parent / name).is_dir():
            raise SystemExit(f"bench build: {source.parent / name} not found (the three trees must be siblings)")
        for side in ("make", "scons"):
            shutil.copytree(source.parent / name, work / side / name, symlinks=True)
    fw_make, fw_scons = work / "make/core-firmware", work / "scons/core-firmware"
    checkout = make_checkout(work / "checkout")
    variables = f"CORE_FIRMWARE={fw_scons}"
    make_clean, scons_clean = _make(fw_make, "clean"), partial(clean_scons, checkout)
    clean = _interleaved({"make": (make_clean, _make(fw_make, "-j2")),
                          "scons": (scons_clean, _scons(checkout, "-j2", variables))}, repeat)
    noop = _interleaved({"make": (_nothing, _make(fw_make, "-j2")),
                         "scons": (_nothing, _scons(checkout, "-j2", variables))}, repeat)
    scons_edit = _editor(fw_scons / CORE_EDIT)  # one editor: each build sees a text no build has seen
    edit = _interleaved(
        {
            "make": (_editor(fw_make / CORE_EDIT), _make(fw_make, "-j2")),
            "scons": (scons_edit, _scons(checkout, "-j2", variables)),
            "plain_scons": (scons_edit, _scons(checkout, "-j2", variables, launcher=False)),
        },
        repeat,
    )
    # compare the images of the pristine sources (write_text: a new mtime, so make notices)
    for side in ("make", "scons"):
        (work / side / "core-firmware" / CORE_EDIT).write_text((source / CORE_EDIT).read_text())
    _make(fw_make, "-j2")()
    cache = f"CACHE_DIR={work / 'cache'}"
    clean_scons(checkout)  # SCons caches only what it builds: a clean build fills the cache
    _scons(checkout, "-j2", variables, cache)()
    clone = work / "clone"
    warm = _interleaved({"make": (make_clean, _make(fw_make, "-j2")),
                         "scons": (_fresh_clone(checkout, clone), _scons(clone, "-j2", variables, cache))}, repeat)
    make_bin, scons_bin = fw_make / "build/core-firmware.bin", checkout / "build/release/firmware.bin"
    clean_j2, edit_ratio = _paired(clean, "scons", "make"), _paired(edit, "scons", "make")
    noop_ratio, warm_ratio = _paired(noop, "scons", "make"), _paired(warm, "make", "scons")
    make, scons = ({
        "clean_j2_s": clean[side],
        "noop_s": noop[side],
        "one_file_rebuild_s": edit[side],
        "clean_j2_cpu_s": clean[f"{side}_cpu"],
        "one_file_rebuild_cpu_s": edit[f"{side}_cpu"],
    } for side in ("make", "scons"))
    scons["warm_cache_fresh_clone_s"] = warm["scons"]
    scons["one_file_rebuild_plain_scons_s"] = edit["plain_scons"]
    return {
        "tree": label,  # never a path of this machine: the record is committed
        "make": make,
        "scons": scons,
        "make_bin_sha256": _sha(make_bin),
        "scons_bin_sha256": _sha(scons_bin),
        "bin_bytes": scons_bin.stat().st_size,
        "bin_identical": make_bin.read_bytes() == scons_bin.read_bytes(),
        "clean_j2_scons_over_make": clean_j2,
        "one_file_scons_over_make": edit_ratio,
        "one_file_plain_scons_over_make": _paired(edit, "plain_scons", "make"),
        "noop_scons_over_make": noop_ratio,
        "make_clean_j2_over_scons_warm_cache": warm_ratio,
        "noop_s_at_spec_speed": round(noop_ratio["median"] * SPEC_MAKE_NOOP_S, 3),
        "targets": {
            "clean_j2_not_slower_than_make": clean_j2["median"] <= 1.0,
            "one_file_at_most_1_15x_make": edit_ratio["median"] <= 1.15,
            "warm_cache_at_least_5x_faster_than_make_clean": warm_ratio["median"] >= 5.0,
        },
    }


def _unpack(name: str, dest: Path) -> Path:
    try:
        return unpack_tree_set(name, dest)
    except FileNotFoundError as e:
        raise SystemExit(f"bench build: {e}; or use --core-firmware") from None


def run(argv: list[str]) -> dict[str, object]:
    """Figures for the example (always) and for --core-firmware (when given)."""
    p = argparse.ArgumentParser(prog="tools/bench build")
    p.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    p.add_argument("--core-firmware", type=Path, help="a core-firmware tree with its sibling libraries")
    p.add_argument("--sets", default=",".join(TREE_SETS) if PEERS.is_dir() else "",
                   help="tree sets from ../shared/peers, comma separated ('' for none)")
    args = p.parse_args(argv)
    result: dict[str, object] = {"toolchain": find_toolchain().version(), "repeat": args.repeat}
    with tempfile.TemporaryDirectory(prefix="sparkflash-bench-build-") as tmp:
        work = Path(tmp)
        checkout = make_checkout(work / "example")
        result["example"] = _example(checkout, args.repeat)
        result["example"]["bin_bytes"] = (checkout / "build/release/firmware.bin").stat().st_size  # type: ignore[index]
        if args.core_firmware:
            result["core_firmware"] = _tree_set(args.core_firmware.resolve(), work / "cf", args.repeat,
                                               args.core_firmware.name)
        sets: dict[str, object] = {}
        for name in filter(None, args.sets.split(",")):
            sets[name] = _tree_set(_unpack(name, work / "peers" / name), work / name, args.repeat,
                                   f"{name} (../shared/peers)")
        if sets:
            result["tree_sets"] = sets  # report.py's #12 rows, one per tree set
    return result
