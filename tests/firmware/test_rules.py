"""The build rules as data, without running scons: build.mk reading (make's order and
subset), the three trees' source sets and flags, toolchain and size errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkflash.boards import load_board
from sparkflash.errors import InputError, ToolchainError
from sparkflash.firmware.coretree import BuildOptions, load_tree
from sparkflash.firmware.makefrag import MakeVars, rwildcard
from sparkflash.firmware.sizereport import SizeReport, check_fits, format_table
from sparkflash.firmware.toolchain import find_toolchain
from sparkflash.firmware.workspace import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "core-firmware"


def _touch(root: Path, *names: str) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_text("")


def test_rwildcard_lists_files_before_subdirs_sorted(tmp_path: Path) -> None:
    _touch(tmp_path, "b.cpp", "a.cpp", "sub/z.cpp", "a_dir/y.cpp", ".hidden/x.cpp", "c.c")
    assert [p.relative_to(tmp_path).as_posix() for p in rwildcard(tmp_path, "*.cpp")] == [
        "a.cpp",
        "b.cpp",
        "a_dir/y.cpp",
        "sub/z.cpp",
    ]


def test_build_mk_subset(tmp_path: Path) -> None:
    _touch(tmp_path, "src/application.cpp", "src/main.cpp")
    mk = tmp_path / "build.mk"
    mk.write_text(
        "# comment\nP = src\nINCLUDE_DIRS += $(P)/inc\nCPPSRC += $(call target_files,src/,*.cpp)\n"
        "ifdef NO_APP\nCPPSRC := $(filter-out $(P)/application.cpp,$(CPPSRC))\nelse\nX = y\nendif\n"
        "CSRC += \\\n  a.c\n"
    )
    plain = MakeVars(tmp_path)
    plain.include(mk)
    assert plain.words("CPPSRC") == ["src/application.cpp", "src/main.cpp"] and plain.values["X"] == "y"
    assert plain.words("INCLUDE_DIRS") == ["src/inc"] and plain.words("CSRC") == ["a.c"]
    app = MakeVars(tmp_path, {"NO_APP": "1"})
    app.include(mk)
    assert app.words("CPPSRC") == ["src/main.cpp"] and "X" not in app.values


def test_build_mk_unsupported_construct_names_file_and_line(tmp_path: Path) -> None:
    mk = tmp_path / "build.mk"
    mk.write_text("A = 1\nB += $(shell ls)\n")
    with pytest.raises(InputError, match=r"build\.mk:2: make construct \$\(shell ls\)"):
        MakeVars(tmp_path).include(mk)


def test_example_tree_rules() -> None:
    tree = load_tree(EXAMPLE)
    fw = tree.firmware
    assert [s.rel for s in fw.sources][-1] == "src/startup/startup_stm32f10x_md.S"
    assert "src/application.cpp" in [s.rel for s in fw.sources]
    assert fw.include_dirs[0] == EXAMPLE / "inc" and fw.include_dirs[-1] == EXAMPLE / "build"
    assert "DFU_BUILD_ENABLE" in fw.defines and "RELEASE_BUILD" in fw.defines
    assert tree.common.archive == "libcore-common-lib.a" and tree.communication.archive == "libcore-communication-lib.a"
    assert "SPARK_PRODUCT_ID=65535" in tree.communication.defines


def test_app_replaces_application_cpp_and_debug_define() -> None:
    tree = load_tree(EXAMPLE, BuildOptions(app="blink", debug=True))
    rels = [s.rel for s in tree.firmware.sources]
    assert rels[0] == "applications/blink/application.cpp" and "src/application.cpp" not in rels
    assert tree.firmware.include_dirs[0] == EXAMPLE / "applications/blink"
    assert tree.firmware.cxxflags[0] == "-std=gnu++11"
    assert all("DEBUG_BUILD" in c.defines and "RELEASE_BUILD" not in c.defines for c in tree.components)
    with pytest.raises(InputError, match="no such application directory"):
        load_tree(EXAMPLE, BuildOptions(app="nope"))


def test_missing_sibling_message(tmp_path: Path) -> None:
    (tmp_path / "core-firmware").mkdir()
    (tmp_path / "core-common-lib").mkdir()
    with pytest.raises(InputError) as e:
        load_tree(tmp_path / "core-firmware")
    assert str(tmp_path / "core-communication-lib") in str(e.value)


def test_toolchain_errors_name_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(ToolchainError, match="gcc-arm-none-eabi") as e:
        find_toolchain(str(tmp_path / "nope"))
    assert e.value.exit_code == 2 and "\n" not in str(e.value)
    with pytest.raises(ToolchainError, match="PATH"):
        find_toolchain(None, path=str(tmp_path))


def test_size_check_says_by_how_many_bytes() -> None:
    board = load_board("spark-core")
    ok = SizeReport("fw.elf", 100, 10, 20, 0x08005000, 110592, 110592, 20480, 20480)
    check_fits(ok)
    assert "110592" in format_table(ok)
    over = SizeReport("fw.elf", 0, 0, 0, 0x08005000, 110600, board.firmware_max_size, 20500, board.ram_size)
    with pytest.raises(InputError, match="by 8 bytes.*by 20 bytes"):
        check_fits(over)
