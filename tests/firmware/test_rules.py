"""The build rules as data, without running scons: make -n output read into commands,
the example trees' source sets and flags, toolchain and size errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkflash.boards import load_board
from sparkflash.errors import InputError, ToolchainError
from sparkflash.firmware.coretree import BuildOptions, load_tree
from sparkflash.firmware.makeprobe import parse
from sparkflash.firmware.sizereport import SizeReport, check_fits, format_table
from sparkflash.firmware.toolchain import find_toolchain
from sparkflash.firmware.workspace import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "core-firmware"


def test_make_output_parsed_with_submake_directories(tmp_path: Path) -> None:
    """The probe's markers give each sub-make's directory; paths become absolute, make's
    dependency-file flags are dropped, archive members keep make's order."""
    top = tmp_path / "fw" / "build"
    out = "\n".join([
        "echo Building core-common-lib",
        f"sparkflash-submake-enter {top}\037-C\037../../lib/build\037--no-print-directory",
        "arm-none-eabi-gcc -Os -I../inc -I. -MD -MP -MF obj/a.o.d -DX=1 -c -o obj/a.o ../a.c",
        "mkdir -p obj/",
        "arm-none-eabi-ar -r liblib.a obj/a.o obj/a.o",
        "sparkflash-submake-leave",
        "arm-none-eabi-gcc -Os -x assembler-with-cpp -c -o obj/s.o ../s.S",
        ("arm-none-eabi-g++ -Os -MD -MP -MF fw.elf.d obj/s.o --output fw.elf -T../l.ld -L../../lib/build -llib "
         "-Wl,-Map,fw.map -u _printf_float"),
    ])
    plan = parse(out, top)
    lib = tmp_path / "lib" / "build"
    (a, s) = plan.compiles
    assert a.cwd == lib and a.source == tmp_path / "lib" / "a.c" and a.output == lib / "obj" / "a.o"
    assert a.args == ("-Os", f"-I{tmp_path / 'lib' / 'inc'}", f"-I{lib}", "-DX=1", "-c")
    assert s.lang == "asm" and s.cwd == top
    assert plan.archives[0].members == (lib / "obj" / "a.o",)
    (link,) = plan.links
    assert link.output == top / "fw.elf"
    assert link.args == ("-Os", ("obj", top / "obj" / "s.o"), ("script", tmp_path / "fw" / "l.ld"), ("libdir", lib),
                         "-llib", ("map", top / "fw.map"), "-u", "_printf_float")


def test_unreadable_compile_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"make -n line 1 .*need one -o and one source"):
        parse("arm-none-eabi-gcc -c a.c b.c -o x.o", tmp_path)


def test_example_tree_rules() -> None:
    tree = load_tree(EXAMPLE)
    fw = tree.firmware
    assert [s.source.name for s in fw.compiles][-1] == "startup_stm32f10x_md.S"
    assert EXAMPLE / "src/application.cpp" in [s.source for s in fw.compiles]
    first = fw.compiles[0].args
    assert f"-I{EXAMPLE / 'inc'}" in first and "-DDFU_BUILD_ENABLE" in first and "-DRELEASE_BUILD" in first
    assert [c.archive.output.name for c in tree.libraries if c.archive] == ["libcore-common-lib.a", "libcore-communication-lib.a"]
    assert "-DSPARK_PRODUCT_ID=65535" in tree.libraries[1].compiles[0].args
    assert tree.compile_prefix == ("-D_USE_LONG_TIME_T", "-D_SYS_SELECT_H")


def test_app_replaces_application_cpp_and_debug_define() -> None:
    tree = load_tree(EXAMPLE, BuildOptions(app="blink", debug=True))
    srcs = [s.source for s in tree.firmware.compiles]
    assert srcs[0] == EXAMPLE / "applications/blink/application.cpp" and EXAMPLE / "src/application.cpp" not in srcs
    cxx = tree.firmware.compiles[0].args
    assert cxx[cxx.index(f"-I{EXAMPLE / 'applications/blink'}") - 1] == "-mthumb" and "-std=gnu++11" in cxx
    for comp in tree.components:
        assert all("-DDEBUG_BUILD" in c.args and "-DRELEASE_BUILD" not in c.args for c in comp.compiles if c.lang != "asm")
    assert tree.target == "blink"
    with pytest.raises(InputError, match="no such application directory"):
        load_tree(EXAMPLE, BuildOptions(app="nope"))


def test_build_mk_listing_a_missing_source_names_it(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(EXAMPLE.parent, tmp_path / "ex")
    mk = tmp_path / "ex/core-common-lib/SPARK_Firmware_Driver/src/build.mk"
    mk.write_text(mk.read_text() + "CSRC += $(TARGET_SPARK_SRC_PATH)/gone.c\n")
    with pytest.raises(InputError, match=r"No rule to make target .obj/SPARK_Firmware_Driver/src/gone\.o"):
        load_tree(tmp_path / "ex/core-firmware")


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


def test_device_os_is_refused_with_the_reason(tmp_path: Path) -> None:
    """Device OS v0.4.9 (PLATFORM=core) does not build with GCC 12 under its own makefiles."""
    import tarfile

    from firmware_peers import require_peers

    peers = require_peers("device-os-v0.4.9.tar.gz")
    with tarfile.open(peers / "device-os-v0.4.9.tar.gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(("device-os/build/", "device-os/main/"))]
        tar.extractall(tmp_path, members=members, filter="data")
    for root in (tmp_path / "device-os", tmp_path / "device-os" / "main"):
        with pytest.raises(InputError, match=r"Device OS 0\.4\.9 is not supported: its own `make PLATFORM=core` fails"):
            load_tree(root)
