"""Human output: binary units, plurals, lists as people write them, progress in KiB/MiB."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sparkflash.cli.output import Reporter, _SizeBar, fmt_size, listing, plural


def test_sizes_are_binary() -> None:
    assert [fmt_size(n) for n in (0, 312, 1024, 1536, 65536, 1 << 20, 3 << 19, 2 << 20)] == [
        "0 B", "312 B", "1 KiB", "1.5 KiB", "64 KiB", "1 MiB", "1.5 MiB", "2 MiB"]


def test_plural_and_listing() -> None:
    assert (plural(1, "region"), plural(3, "region"), plural(0, "sector")) == ("1 region", "3 regions", "0 sectors")
    assert listing(["serial", "dfu"]) == "serial, dfu" and listing([]) == "none"


def test_progress_bar_counts_in_binary_units() -> None:
    out = io.StringIO()
    bar = _SizeBar(total=3 << 20, file=out, disable=False, desc="web @0x100000",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {sizes} [{elapsed}]")
    bar.update(3 << 19)
    bar.close()
    assert "1.5 MiB/3 MiB" in out.getvalue() and "MB" not in out.getvalue() and "kB" not in out.getvalue()


def test_deploy_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    rep = Reporter(as_json=False)
    rep({"event": "deploy-start", "release": "example", "version": "1.0.0", "device": "d1", "via": "dfu", "regions": 1})
    rep({"event": "region-done", "region": "font", "device": "d1", "status": "verified", "sectors_skipped": 1})
    err = capsys.readouterr().err
    assert "(1 region)" in err and "(1 sector unchanged)" in err and "regions)" not in err


def test_quiet_prints_nothing_on_success(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sparkflash.cli import main

    root = Path(__file__).resolve().parents[2]
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\x00\x50\x00\x20\x31\x51\x00\x08" + bytes(4000))
    capsys.readouterr()
    assert main(["manifest", "build", str(root / "manifests" / "example.yaml"), "--firmware", str(fw),
                 "-o", str(tmp_path / "rel"), "-q"]) == 0
    assert main(["keys", "generate", "-o", str(tmp_path / "k.pem")]) == 0
    assert main(["manifest", "sign", str(tmp_path / "rel"), "--key", str(tmp_path / "k.pem"), "-q"]) == 0
    out, err = capsys.readouterr()
    assert "private key" in out and out.count("\n") == 3 and err == ""  # only keys generate spoke
