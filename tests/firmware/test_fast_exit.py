"""A finished scons run leaves with os._exit (sparkflash.scons.fast_exit): SCons' exit
status and every exit handler must survive that."""

from __future__ import annotations

from pathlib import Path

from sparkflash.firmware.workspace import make_checkout, run_scons


def test_handler_registered_before_the_tool_still_runs(tmp_path: Path) -> None:
    """atexit runs handlers last-in first-out: one a SConstruct registers before loading
    spark_core would come after the fast exit, so then the process exits normally."""
    checkout = make_checkout(tmp_path / "checkout")
    sconstruct = checkout / "SConstruct"
    sconstruct.write_text('import atexit\natexit.register(lambda: print("sparkflash-test: user handler ran"))\n'
                          + sconstruct.read_text())
    r = run_scons(checkout, "-h", env={"PATH": "/nonexistent"})  # -h needs no toolchain
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sparkflash-test: user handler ran" in r.stdout and "CORE_FIRMWARE" in r.stdout


def test_help_output_is_complete_after_the_fast_exit(tmp_path: Path) -> None:
    checkout = make_checkout(tmp_path / "checkout")
    r = run_scons(checkout, "-h", env={"PATH": "/nonexistent"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith("Use scons -H for help about SCons built-in command-line options.")
