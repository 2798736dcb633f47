"""Build timings: clean -j1, clean -j2, no-op and one-file rebuild of the example, and with
--core-firmware PATH the same for a core-firmware tree (siblings beside it) next to its own
makefiles' times, plus whether both .bin files are byte-identical.

    tools/bench build [--repeat N] [--core-firmware /path/to/core-firmware]

Everything runs in temporary copies: the repository's build/ and the given trees are not
touched. Figures are medians of N runs (wall seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sparkflash.build.coretree import COMMON, COMMUNICATION
from sparkflash.build.toolchain import find_toolchain
from sparkflash.build.workspace import make_checkout, run_make, run_scons

EXAMPLE_EDIT = "examples/core-firmware/src/application.cpp"
CORE_EDIT = "src/spark_wiring.cpp"


def _median(fn: Callable[[], None], prepare: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        prepare()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 3)


def _scons(checkout: Path, *args: str) -> Callable[[], None]:
    def go() -> None:
        r = run_scons(checkout, *args)
        if r.returncode:
            raise SystemExit(f"bench build: scons {' '.join(args)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

    return go


def _clean_scons(checkout: Path) -> Callable[[], None]:
    def clean() -> None:
        shutil.rmtree(checkout / "build", ignore_errors=True)
        (checkout / ".sconsign.dblite").unlink(missing_ok=True)

    return clean


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


def _scons_figures(checkout: Path, edit_file: Path, repeat: int, *variables: str) -> dict[str, float]:
    clean = _clean_scons(checkout)
    figures = {
        "clean_j1_s": _median(_scons(checkout, "-j1", *variables), clean, repeat),
        "clean_j2_s": _median(_scons(checkout, "-j2", *variables), clean, repeat),
        "noop_s": _median(_scons(checkout, "-j2", *variables), _nothing, repeat),
    }
    edit = _editor(edit_file)
    figures["one_file_rebuild_s"] = _median(_scons(checkout, "-j2", *variables), edit, repeat)
    return figures


def _make(firmware: Path, *args: str) -> Callable[[], None]:
    def go() -> None:
        r = run_make(firmware, *args)
        if r.returncode:
            raise SystemExit(f"bench build: make {' '.join(args)} in {firmware} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

    return go


def _core_firmware(source: Path, work: Path, repeat: int) -> dict[str, object]:
    trees = {}
    for name in ("core-firmware", COMMON, COMMUNICATION):
        if not (source.parent / name).is_dir():
            raise SystemExit(f"bench build: {source.parent / name} not found (the three trees must be siblings)")
        for side in ("make", "scons"):
            shutil.copytree(source.parent / name, work / side / name, symlinks=True)
        trees[name] = work / "make" / name
    firmware_make, firmware_scons = work / "make/core-firmware", work / "scons/core-firmware"
    make_clean = _make(firmware_make, "clean")
    make = {
        "clean_j1_s": _median(_make(firmware_make, "-j1"), make_clean, repeat),
        "clean_j2_s": _median(_make(firmware_make, "-j2"), make_clean, repeat),
        "noop_s": _median(_make(firmware_make, "-j2"), _nothing, repeat),
    }
    make["one_file_rebuild_s"] = _median(_make(firmware_make, "-j2"), _editor(firmware_make / CORE_EDIT), repeat)
    checkout = make_checkout(work / "checkout")
    variables = (f"CORE_FIRMWARE={firmware_scons}",)
    scons = _scons_figures(checkout, firmware_scons / CORE_EDIT, repeat, *variables)
    # compare the pristine sources' images: rebuild both without the timing edits
    for side in ("make", "scons"):
        shutil.copy2(source / CORE_EDIT, work / side / "core-firmware" / CORE_EDIT)
    _make(firmware_make, "-j2")()
    _scons(checkout, "-j2", *variables)()
    make_bin, scons_bin = firmware_make / "build/core-firmware.bin", checkout / "build/release/firmware.bin"
    return {
        "tree": str(source),
        "make": make,
        "scons": scons,
        "make_bin_sha256": _sha(make_bin),
        "scons_bin_sha256": _sha(scons_bin),
        "bin_bytes": scons_bin.stat().st_size,
        "bin_identical": make_bin.read_bytes() == scons_bin.read_bytes(),
        "clean_j2_scons_over_make": round(scons["clean_j2_s"] / make["clean_j2_s"], 3),
        "targets": {"clean_j2_not_slower_than_make": scons["clean_j2_s"] <= make["clean_j2_s"], "noop_under_0_5_s": scons["noop_s"] < 0.5},
    }


def run(argv: list[str]) -> dict[str, object]:
    """Figures for the example (always) and for --core-firmware (when given)."""
    p = argparse.ArgumentParser(prog="tools/bench build")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    p.add_argument("--core-firmware", type=Path, help="a core-firmware tree with its sibling libraries")
    args = p.parse_args(argv)
    result: dict[str, object] = {"toolchain": find_toolchain().version(), "repeat": args.repeat}
    with tempfile.TemporaryDirectory(prefix="sparkflash-bench-build-") as tmp:
        work = Path(tmp)
        checkout = make_checkout(work / "example")
        result["example"] = _scons_figures(checkout, checkout / EXAMPLE_EDIT, args.repeat)
        result["example"]["bin_bytes"] = (checkout / "build/release/firmware.bin").stat().st_size  # type: ignore[index]
        if args.core_firmware:
            result["core_firmware"] = _core_firmware(args.core_firmware.resolve(), work / "cf", args.repeat)
    return result
