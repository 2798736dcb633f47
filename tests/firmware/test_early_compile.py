"""sparkflash.scons.early_compile without SCons: the record is read only when it is whole
and consistent, and due objects start with their outputs kept aside."""

from __future__ import annotations

import marshal
import os
from pathlib import Path
from typing import Any

import pytest

from sparkflash.scons import early_compile
from sparkflash.scons.early_compile import due, jobs, launch, load, record_path, stat, write

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
    return {"version": early_compile.VERSION, "argv": ARGV, "env": {"PATH": os.environ["PATH"]},
            "names": [str(source)], "files": {str(source): stat(str(source))},
            "objects": [{"target": target, "args": ["cat", str(source), ">", target], "out": 3, "deps": [0],
                         "values": []}],
            "links": [], "last": {}}


def test_the_record_name_depends_on_the_arguments_only() -> None:
    assert record_path(ARGV) == record_path(list(ARGV))
    assert record_path(ARGV) != record_path([*ARGV, "APP=tinker"])
    assert record_path(["a", "b"]) != record_path(["ab"])  # the words, not their concatenation
    assert record_path(ARGV).startswith("build/.sparkflash/compile-ahead-")


@pytest.mark.parametrize(("argv", "n"), [([], 1), (["-j2"], 2), (["-j", "3"], 3), (["--jobs=4"], 4),
                                         (["-j0"], 1), (["-jx"], 1), (["-j"], 1)])
def test_jobs(argv: list[str], n: int) -> None:
    assert jobs(argv) == n


def test_a_written_record_is_read_back_and_its_edited_object_is_due(top: Path) -> None:
    data = _record(top)
    write(data)
    assert load(ARGV) == data
    assert due(data) == []
    (top / "a.c").write_text("two\n")
    assert [o["target"] for o in due(data)] == [str(top / "obj/a.o")]
    assert load(["-Q"]) is None  # another command line: another record


def _broken(data: dict[str, Any]) -> list[Any]:
    """Records that must all read as "none"."""
    out: list[Any] = [None, [], {**data, "version": 1}, {**data, "argv": ["other"]}, {**data, "env": {"PATH": 1}},
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
    path = top / record_path(ARGV)
    path.parent.mkdir(parents=True)
    for bad in _broken(data):
        path.write_bytes(marshal.dumps(bad))
        assert load(ARGV) is None, bad
    whole = marshal.dumps(data)
    for cut in (1, len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:cut])
        assert load(ARGV) is None
    path.write_bytes(b"\xff" * 64)
    assert load(ARGV) is None


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
