"""sparkflash.scons.early_compile without SCons: the record is read only when it is whole
and consistent, and due objects start with their outputs kept aside."""

from __future__ import annotations

import marshal
import os
from pathlib import Path
from typing import Any

import pytest

from sparkflash.scons import early_compile
from sparkflash.scons.early_compile import due, jobs, launch, load, record_path, start, stat, write

ARGV = ["-Q", "-j2", "CORE_FIRMWARE=x"]


@pytest.fixture
def top(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _record(top: Path) -> dict[str, Any]:
    """One object `obj/a.o` made from `a.c` by a shell redirect (the -o word is the target)."""
    (top / "obj").mkdir()
    source = top / "a.c"
    source.write_text("one\n")
    target = str(top / "obj/a.o")
    return {"version": early_compile.VERSION, "argv": ARGV, "top": str(top), "env": {"PATH": os.environ["PATH"]},
            "names": [str(source)], "files": {str(source): stat(str(source))},
            "objects": [{"target": target, "args": ["cat", str(source), ">", target], "out": 3, "deps": [0],
                         "values": []}],
            "links": [], "last": {}}


def test_the_record_is_per_user_and_named_for_the_checkout_and_the_arguments(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "records"
    monkeypatch.setenv("SPARKFLASH_BUILD_CACHE", str(folder))
    assert os.path.dirname(record_path(ARGV, "/a")) == "/a/build/.sparkflash"  # no such folder yet: the checkout's
    folder.mkdir()
    assert record_path(ARGV, "/a") == record_path(list(ARGV), "/a")
    assert os.path.dirname(record_path(ARGV, "/a")) == str(folder)
    assert os.path.basename(record_path(ARGV, "/a")).startswith("compile-ahead-")
    assert record_path(ARGV, "/a") != record_path([*ARGV, "APP=tinker"], "/a")
    assert record_path(ARGV, "/a") != record_path(ARGV, "/b")  # another checkout
    assert record_path(["a", "b"], "/a") != record_path(["ab"], "/a")  # the words, not their concatenation
    monkeypatch.setenv("SPARKFLASH_BUILD_CACHE", "off")
    assert os.path.dirname(record_path(ARGV, "/a")) == "/a/build/.sparkflash"


@pytest.mark.parametrize(("argv", "n"), [([], 1), (["-j2"], 2), (["-j", "3"], 3), (["--jobs=4"], 4),
                                         (["-j0"], 1), (["-jx"], 1), (["-j"], 1)])
def test_jobs(argv: list[str], n: int) -> None:
    assert jobs(argv) == n


def test_a_written_record_is_read_back_and_its_edited_or_missing_object_is_due(top: Path) -> None:
    data = _record(top)
    assert write(data) == os.path.dirname(record_path(ARGV, str(top)))
    assert load(ARGV, str(top)) == data
    (top / "obj/a.o").write_text("one\n")
    assert due(data) == []
    (top / "a.c").write_text("two\n")
    assert [o["target"] for o in due(data)] == [str(top / "obj/a.o")]
    (top / "a.c").write_text("one\n")
    data["files"] = {str(top / "a.c"): stat(str(top / "a.c"))}
    assert due(data) == []
    (top / "obj/a.o").unlink()  # a clean: the object is due, its sources unchanged
    assert [o["target"] for o in due(data)] == [str(top / "obj/a.o")]
    assert load(["-Q"], str(top)) is None  # another command line: another record
    assert load(ARGV, str(top / "obj")) is None  # another checkout: another record


def test_after_a_clean_the_first_j_objects_start_in_their_folders(top: Path) -> None:
    data = _record(top)
    one = data["objects"][0]
    data["objects"] = [{**one, "target": str(top / f"build/{n}.o"), "args": ["cat", "a.c", ">", str(top / f"build/{n}.o")]}
                       for n in "xyz"]
    write(data)
    old, stale, started = start(ARGV, str(top))  # -j2: two of the three, in the record's order
    assert old == data and stale
    assert [e.target for e in started] == [str(top / "build/x.o"), str(top / "build/y.o")]
    assert [e.wait() for e in started] == [0, 0]
    assert [Path(e.temp).read_text() for e in started] == ["one\n", "one\n"]
    for e in started:
        e.discard()
    assert start([*ARGV, "-n"], str(top)) == (None, False, [])  # builds nothing: starts nothing


def _broken(data: dict[str, Any]) -> list[Any]:
    """Records that must all read as "none"."""
    out: list[Any] = [None, [], {**data, "version": 1}, {**data, "argv": ["other"]}, {**data, "top": "/elsewhere"},
                      {**data, "env": {"PATH": 1}},
                      {**data, "names": "x"}, {**data, "links": None}]
    o = data["objects"][0]
    for bad in ({"out": 0}, {"out": 4}, {"deps": [1]}, {"deps": [-1]}, {"args": "cat"}, {"values": [1]},
                {"target": None}):
        out.append({**data, "objects": [{**o, **bad}]})
    out.append({**data, "files": {data["names"][0]: (1, 2, 3)}})
    out.append({**data, "links": [{**o, "map": 9, "objects": []}]})
    out.append({**data, "links": [{**o, "map": -1, "objects": [(0, "x")]}]})
    return out


def test_a_record_that_is_not_whole_and_consistent_is_none(top: Path) -> None:
    data = _record(top)
    path = Path(record_path(ARGV, str(top)))
    path.parent.mkdir(parents=True, exist_ok=True)
    for bad in _broken(data):
        path.write_bytes(marshal.dumps(bad))
        assert load(ARGV, str(top)) is None, bad
    whole = marshal.dumps(data)
    for cut in (1, len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:cut])
        assert load(ARGV, str(top)) is None
    path.write_bytes(b"\xff" * 64)
    assert load(ARGV, str(top)) is None


def test_an_early_run_writes_beside_its_target_and_keeps_its_output(top: Path) -> None:
    data = _record(top)
    early = launch(data["objects"][0], data["names"], data["env"])
    assert early is not None
    assert early.wait() == 0
    assert Path(early.temp).read_text() == "one\n" and Path(early.temp).parent == top / "obj"
    assert not (top / "obj/a.o").exists()
    assert early.snapshot == {str(top / "a.c"): stat(str(top / "a.c"))}
    early.discard()
    assert not Path(early.temp).exists() and sorted(os.listdir(top / "obj")) == []
