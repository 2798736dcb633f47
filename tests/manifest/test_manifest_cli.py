"""`sparkflash manifest build|show|verify|sign`: output and exit codes (0 ok, 2 input, 3 verify)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.cli import main
from sparkflash.manifest.keys import generate_key
from sparkflash.manifest.release import MANIFEST_NAME, SIGNATURE_NAME

RELEASE = """
name: demo
version: "1.2.3"
board: spark-core
regions:
  - name: firmware
    kind: firmware
    source: {build: firmware}
  - name: blob
    memory: external
    address: 0x80000
    source: {file: a.bin}
"""

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def go(*argv: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return go


@pytest.fixture
def signed(tmp_path: Path, run: Run, write_yaml: Callable[[str], Path], firmware: Path,
           dev_key: tuple[Path, Path]) -> Path:
    out = tmp_path / "dist"
    code, _, err = run("manifest", "build", write_yaml(RELEASE), "--firmware", firmware, "--out", out, "--key", dev_key[0])
    assert code == 0, err
    return out


def test_build_sign_verify(signed: Path, run: Run, dev_key: tuple[Path, Path]) -> None:
    assert (signed / SIGNATURE_NAME).is_file()
    code, out, _ = run("manifest", "verify", signed, "--trust", dev_key[1])
    assert code == 0
    assert out.startswith("OK: demo 1.2.3: signature by key ") and "2 blob digests verified" in out
    code, out, _ = run("manifest", "verify", signed / MANIFEST_NAME, "--trust", dev_key[1].parent, "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_show_prints_both_flashes_and_writes_svg(signed: Path, run: Run, tmp_path: Path) -> None:
    svg = tmp_path / "map.svg"
    code, out, _ = run("manifest", "show", signed, "--svg", svg)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "demo 1.2.3 for spark-core"
    internal = next(i for i, line in enumerate(lines) if line.startswith("internal flash 0x08000000..0x08020000"))
    external = next(i for i, line in enumerate(lines) if line.startswith("external flash 0x00000000..0x00200000"))
    assert "firmware  firmware  0x08005000  0x08005040  64" in lines[internal + 2]
    assert "blob      data      0x00080000  0x00081000  4096  1        user" in lines[external + 2]
    root = ET.parse(svg).getroot()
    text = " ".join("".join(e.itertext()) for e in root.iter())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "internal (0x08000000, 128 KiB, 1 KiB sectors)" in text and "external (0x00000000, 2 MiB, 4 KiB sectors)" in text
    assert "blob 0x80000 4 KiB" in text and "device_key" in text


def test_show_json_is_the_manifest(signed: Path, run: Run) -> None:
    code, out, _ = run("manifest", "show", signed, "--json")
    assert code == 0
    assert json.loads(out) == json.loads((signed / MANIFEST_NAME).read_bytes())


def test_tampered_blob_exits_3(signed: Path, run: Run, dev_key: tuple[Path, Path]) -> None:
    blob = next((signed / "blobs" / "sha256").iterdir())
    data = bytearray(blob.read_bytes())
    data[10] ^= 1
    blob.write_bytes(bytes(data))
    code, _, err = run("manifest", "verify", signed, "--trust", dev_key[1])
    assert code == 3 and "does not match the manifest" in err


def test_unsigned_exits_3(signed: Path, run: Run, dev_key: tuple[Path, Path]) -> None:
    (signed / SIGNATURE_NAME).unlink()
    code, _, err = run("manifest", "verify", signed, "--trust", dev_key[1])
    assert code == 3 and "unsigned release" in err


def test_unknown_key_exits_3_and_sign_fixes_it(signed: Path, run: Run, tmp_path: Path) -> None:
    other, other_pub = tmp_path / "other.pem", tmp_path / "other.pub.pem"
    generate_key(other)
    code, _, err = run("manifest", "verify", signed, "--trust", other_pub)
    assert code == 3 and "signed by unknown key" in err
    code, out, _ = run("manifest", "sign", signed, "--key", other)
    assert code == 0 and "wrote" in out
    assert run("manifest", "verify", signed, "--trust", other_pub)[0] == 0


def test_bad_yaml_exits_2_with_file_and_line(tmp_path: Path, run: Run, write_yaml: Callable[[str], Path],
                                             firmware: Path) -> None:
    y = write_yaml(RELEASE.replace("address: 0x80000", "address: 0x2000"))
    code, _, err = run("manifest", "build", y, "--firmware", firmware, "--out", tmp_path / "dist")
    assert code == 2
    assert err.startswith(f"sparkflash: error: {y}:10: region 'blob' at external 0x00002000: writes protected area")
    assert not (tmp_path / "dist").exists()


def test_bad_key_fails_before_any_output(tmp_path: Path, run: Run, write_yaml: Callable[[str], Path],
                                         firmware: Path) -> None:
    code, _, err = run("manifest", "build", write_yaml(RELEASE), "--firmware", firmware, "--out", tmp_path / "dist",
                       "--key", tmp_path / "nokey.pem")
    assert code == 2 and "signing key not found" in err
    assert not (tmp_path / "dist").exists()


def test_missing_firmware_argument_is_explained(tmp_path: Path, run: Run, write_yaml: Callable[[str], Path]) -> None:
    code, _, err = run("manifest", "build", write_yaml(RELEASE), "--out", tmp_path / "dist")
    assert code == 2 and ":7: region 'firmware': build output 'firmware' not given; pass --firmware PATH" in err


def test_shared_sector_warns_or_fails_with_flag(tmp_path: Path, run: Run, write_yaml: Callable[[str], Path],
                                                firmware: Path) -> None:
    y = write_yaml(RELEASE + """
  - name: tail
    memory: external
    address: 0x81000
    source: {file: small.bin}
  - name: near
    memory: external
    address: 0x81800
    source: {file: small.bin}
""")
    code, _, err = run("manifest", "build", y, "--firmware", firmware, "--out", tmp_path / "a")
    assert code == 0 and "sparkflash: warning:" in err and "region 'near'" in err
    code, _, err = run("manifest", "build", y, "--firmware", firmware, "--out", tmp_path / "b", "--strict-sectors")
    assert code == 2 and "sparkflash: error:" in err and "shares the 0x1000-byte sector at 0x00081000" in err


def test_show_missing_manifest_exits_2(tmp_path: Path, run: Run) -> None:
    code, _, err = run("manifest", "show", tmp_path / "nothing")
    assert code == 2 and "cannot read manifest" in err


def test_verify_requires_trust(signed: Path, run: Run) -> None:
    with pytest.raises(SystemExit) as e:
        run("manifest", "verify", signed)
    assert e.value.code == 2


def test_show_yaml_plans_without_writing(tmp_path: Path, run: Run, write_yaml: Callable[[str], Path],
                                         firmware: Path) -> None:
    y = write_yaml(RELEASE)
    before = sorted(tmp_path.rglob("*"))
    code, out, _ = run("manifest", "show", y, "--firmware", firmware)
    assert code == 0 and "blob      data      0x00080000" in out
    assert sorted(tmp_path.rglob("*")) == before
