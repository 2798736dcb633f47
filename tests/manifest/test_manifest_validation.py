"""Every validation error of a release YAML names the file, the line and the region.

Each case is a small YAML in which the line marked `# <-` is where the error must point.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.errors import InputError
from sparkflash.manifest.build import plan_release

HEAD = """
name: t
version: "1.0.0"
board: spark-core
regions:
"""

FW = """
  - name: fw
    kind: firmware
    source: {build: firmware}
"""


def expected_line(yaml_path: Path) -> int:
    lines = yaml_path.read_text().splitlines()
    marked = [i + 1 for i, line in enumerate(lines) if "# <-" in line]
    assert len(marked) == 1, "a case marks exactly one line"
    return marked[0]


CASES = [
    pytest.param(HEAD + FW + """
  - name: a
    memory: external
    adress: 0x80000          # <-
    source: {file: a.bin}
""", "a", "unknown key 'adress' in region", id="unknown-region-key"),
    pytest.param("""
name: t
version: "1.0.0"
bord: spark-core             # <-
regions: []
""", None, "unknown key 'bord' in the release", id="unknown-top-key"),
    pytest.param(HEAD + """
  - name: a
    memory: external
    address: 0x80000
    source: {file: a.bin, fill: 0}   # <-
""", "a", "unknown key 'fill' in source (file)", id="unknown-source-key"),
    pytest.param(HEAD + """
  - name: a
    memory: external
    address: 0x80000
    source: {file: a.bin}
  - name: b                  # <-
    memory: external
    address: 0x80800
    source: {file: a.bin}
""", "b", "external 0x00080800..0x00081800: overlaps region 'a' (line 6, 0x00080000..0x00081000)", id="overlap"),
    pytest.param(HEAD + """
  - name: a
    memory: external
    address: 0x1ff800        # <-
    source: {file: a.bin}
""", "a", "out of bounds: 0x001ff800..0x00200800 (4096 bytes) is outside external flash", id="out-of-bounds"),
    pytest.param(HEAD + """
  - name: a
    memory: internal
    address: 0x00080000      # <-
    source: {file: a.bin}
""", "a", "out of bounds: 0x00080000..0x00081000", id="wrong-memory-window"),
    pytest.param(HEAD + """
  - name: key                # <-
    area: server_key
    source: {file: a.bin}
""", "key", "blob of 4096 bytes (0x1000) is larger than its area 'server_key' (0x00001000..0x00001180, 384 bytes)",
        id="larger-than-area"),
    pytest.param(HEAD + """
  - name: font
    memory: external
    address: 0x80000
    pad_to: 0x800            # <-
    source: {file: a.bin}
""", "font", "blob is 4096 bytes, larger than pad_to 0x800", id="larger-than-pad_to"),
    pytest.param(HEAD + """
  - name: a
    memory: external
    address: 0x80000
    pad_to: 0x80000000       # <-
    source: {file: a.bin}
""", "a", "pad_to 0x80000000 is larger than external flash", id="pad_to-beyond-flash"),
    pytest.param("""
name: t
version: "1.0.0"
board: spark-core
shared_sectors: error
regions:
  - name: a
    memory: external
    address: 0x80000
    source: {file: small.bin}
  - name: b                  # <-
    memory: external
    address: 0x80100
    source: {file: a.bin}
""", "b", "shares the 0x1000-byte sector at 0x00080000 with region 'a' (line 6)", id="shared-sector-error"),
    pytest.param(HEAD + """
  - name: devkey
    memory: external
    address: 0x2000          # <-
    source: {file: a.bin}
""", "devkey", "writes protected area 'device_key' (0x00002000..0x00003000); set allow_protected: true",
        id="protected-device-key"),
    pytest.param(HEAD + """
  - name: boot
    memory: internal
    address: 0x08000000      # <-
    source: {file: a.bin}
""", "boot", "writes protected area 'bootloader' (0x08000000..0x08005000)", id="protected-bootloader"),
    pytest.param(HEAD + """
  - name: a
    memory: external
    address: 0x80000
    source: {file: a.bin}
  - name: a                  # <-
    memory: external
    address: 0x90000
    source: {file: a.bin}
""", "a", "duplicate region name (first on line 6)", id="duplicate-name"),
    pytest.param(HEAD + """
  - name: fw
    kind: firmware
    source: {file: a.bin}    # <-
""", "fw", "does not start with a vector table: initial SP 0x03020100", id="no-vector-table"),
    pytest.param(HEAD + """
  - name: fw
    kind: firmware
    address: 0x08006000      # <-
    source: {build: firmware}
""", "fw", "firmware must go to internal 0x08005000", id="firmware-elsewhere"),
    pytest.param(HEAD + """
  - name: a
    memory: external
    address: 0x80000
    source: {file: missing.bin}   # <-
""", "a", "missing.bin: no such file", id="missing-file"),
    pytest.param(HEAD + """
  - name: a
    memory: external
    address: 0x80000
    source: {dir: nowhere}   # <-
""", "a", "not a directory", id="missing-dir"),
    pytest.param(HEAD + """
  - name: a
    area: userdata           # <-
    source: {file: a.bin}
""", "a", "board spark-core has no area 'userdata' (known: bootloader, system_flags, application, scratch",
        id="unknown-area"),
    pytest.param(HEAD + """
  - name: a
    memory: spi              # <-
    address: 0x80000
    source: {file: a.bin}
""", "a", "no memory named 'spi' (known: internal, external)", id="unknown-memory"),
    pytest.param(HEAD + """
  - name: a
    memory: external
    address: 0x80000
    align: 0x300             # <-
    source: {file: a.bin}
""", "a", "align 0x300 must be a power of two", id="align-not-power-of-two"),
    pytest.param(HEAD + """
  - name: a
    memory: external
    address: 0x80100         # <-
    align: 0x1000
    source: {file: a.bin}
""", "a", "address not aligned to align 0x1000", id="address-not-aligned"),
    pytest.param(HEAD + """
  - name: a
    memory: external
    address: eighty-k        # <-
    source: {file: a.bin}
""", "a", "address must be an integer such as 0x80000, not 'eighty-k'", id="address-not-int"),
    pytest.param("""
name: t
version: 1.0                 # <-
board: spark-core
regions: []
""", None, 'version must be a non-empty string, not 1.0 (quote it: version: "1.0")', id="version-not-string"),
    pytest.param("""
name: t
version: "1.0"               # <-
board: spark-core
regions: []
""", None, "version '1.0' is not semver (MAJOR.MINOR.PATCH)", id="version-not-semver"),
    pytest.param("""
name: t
version: "1.0.0"
board: spark-core
regions:
  - name: a
    memory: external: x      # <-
    address: 0x80000
""", None, "YAML error: mapping values are not allowed here", id="malformed-yaml"),
    pytest.param("""
name: t
version: "1.0.0"
board: spark-core
regions:
  - name: a
    memory: external
    memory: internal         # <-
    source: {file: a.bin}
""", None, "duplicate key 'memory' (first on line 6)", id="duplicate-yaml-key"),
]


@pytest.mark.parametrize(("text", "region", "fragment"), CASES)
def test_error_names_file_line_and_region(
    text: str, region: str | None, fragment: str, write_yaml: Callable[[str], Path], firmware: Path
) -> None:
    path = write_yaml(text)
    with pytest.raises(InputError) as exc:
        plan_release(path, artifacts={"firmware": firmware})
    msg = str(exc.value)
    assert msg.startswith(f"{path}:{expected_line(path)}: "), msg
    if region is not None:
        assert f"region {region!r}" in msg
    assert fragment in msg


SHARED = HEAD + """
  - name: a
    memory: external
    address: 0x80000
    source: {file: small.bin}
  - name: b
    memory: external
    address: 0x80100
    source: {file: a.bin}
"""


def test_shared_sector_is_a_warning_by_default(write_yaml: Callable[[str], Path]) -> None:
    plan = plan_release(write_yaml(SHARED))
    (w,) = plan.warnings
    assert ":10: region 'b' at external 0x00080100: shares the 0x1000-byte sector at 0x00080000" in w
    assert "shared_sectors: error makes this fatal" in w
    assert [r.erase for r in plan.manifest.regions] == [(0x80000,), (0x80000, 0x81000)]


def test_strict_sectors_flag_makes_it_an_error(write_yaml: Callable[[str], Path]) -> None:
    path = write_yaml(SHARED)
    with pytest.raises(InputError, match=f"^{path}:10: region 'b'.*shares the 0x1000-byte sector"):
        plan_release(path, strict_sectors=True)


@pytest.mark.parametrize(("address", "area"), [(0x2000, "device_key"), (0x08000000, "bootloader")])
def test_protected_area_allowed_when_the_region_says_so(
    write_yaml: Callable[[str], Path], address: int, area: str
) -> None:
    memory = "external" if address < 0x08000000 else "internal"
    plan = plan_release(write_yaml(HEAD + f"""
  - name: p
    memory: {memory}
    address: {address:#x}
    allow_protected: true
    source: {{file: a.bin}}
"""))
    (r,) = plan.manifest.regions
    assert (r.address, r.allow_protected, r.size) == (address, True, 4096)


def test_valid_release_lays_out_regions(write_yaml: Callable[[str], Path], firmware: Path) -> None:
    plan = plan_release(write_yaml(HEAD + FW + """
  - name: font
    area: user
    source: {generate: hexfont, count: 2047}
    pad_to: 0x10000
  - name: key
    area: server_key
    source: {file: small.bin}
    pad_to: 0x100
"""), artifacts={"firmware": firmware})
    fw, font, key = plan.manifest.regions
    assert (fw.memory, fw.address, fw.size, fw.kind) == ("internal", 0x08005000, 64, "firmware")
    assert fw.erase == (0x08005000,)
    assert (font.address, font.size, len(font.erase)) == (0x80000, 0x10000, 16)
    assert (key.address, key.size) == (0x1000, 0x100)
    assert plan.warnings == ()


def test_yaml_alias_bomb_is_one_short_error(write_yaml: Callable[[str], Path]) -> None:
    """Aliases make a 1 KiB file a 387-million-item value; the error must not print it."""
    lines = ["description:", '  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"  - &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = write_yaml("\n".join([*lines, "name: *i", ""]))
    with pytest.raises(InputError) as exc:
        plan_release(path)
    assert str(exc.value).startswith(f"{path}:11: name must be a non-empty string, not [[[...]")
    assert len(str(exc.value)) < 300
