"""Whatever YAML a user writes, the build ends in a Plan or one InputError, never a traceback.

Two generators: raw text (exercises the YAML loader), and documents shaped like a release
with plausible and junk values mixed (gets past the loader into schema, layout and source
reading, where the interesting mistakes are).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkflash.errors import InputError
from sparkflash.manifest.build import Plan, plan_release

pytestmark = pytest.mark.fuzz

# Case count from the profile (tests/conftest.py): 200 in CI, 10,000 under tools/fuzz. Not
# derandomized: each run explores new cases; tools/fuzz passes (and records) the seed, and a
# failure prints the seed that reproduces it (pytest --hypothesis-seed=N).
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False),
    st.text(max_size=12), st.binary(max_size=8),
)
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=3), max_leaves=8)
addresses = st.sampled_from([0, 0x1000, 0x1180, 0x2000, 0x80000, 0x80100, 0x100000, 0x1FF000, 0x200000,
                             0x08000000, 0x08005000, 0x0801F000, 0x08020000, -1, 2**32]) | st.integers(0, 2**33)
sources = st.one_of(
    st.fixed_dictionaries({"file": st.sampled_from(["a.bin", "small.bin", "fw.bin", "missing.bin", "web", "",
                                                    "../a.bin"]) | st.text(max_size=8)}),
    st.fixed_dictionaries({"dir": st.sampled_from(["web", "a.bin", "missing", "empty"])}),
    st.fixed_dictionaries({"build": st.sampled_from(["firmware", "bootloader"])}),
    st.fixed_dictionaries({"generate": st.sampled_from(["hexfont", "nope"])},
                          optional={"count": st.integers(-2, 3000) | st.just(2**32), "first": st.integers(-1, 2**17)}),
)
placement = st.one_of(
    st.fixed_dictionaries({"memory": st.sampled_from(["external", "external", "internal", "spi"]),
                           "address": addresses | st.builds(hex, addresses)}),
    st.fixed_dictionaries({"area": st.sampled_from(["user", "server_key", "device_key", "bootloader", "nope"])}),
    st.fixed_dictionaries({"kind": st.just("firmware")}, optional={"address": addresses}),
    st.fixed_dictionaries({}, optional={"memory": st.just("external"), "address": addresses, "area": st.just("user")}),
)
options = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["data", "data", "data", "firmware", "code"]),
    "fill": st.integers(-1, 256),
    "pad_to": addresses,
    "align": st.sampled_from([1, 4, 0x1000, 0x1000, 3, 0x400000, 2**31]),
    "allow_protected": st.booleans(),
})
region = st.builds(lambda name, src, where, opts: {"name": name, "source": src, **opts, **where},
                   st.sampled_from(["fw", "font", "web", "a", "b"]), sources, placement, options)
document = st.fixed_dictionaries(
    {"name": st.just("rel"), "version": st.sampled_from(["1.0.0", "1.0.0", "1.0.0", "1.0", "1.0.0", "2.0.0-rc.1"]),
     "board": st.sampled_from(["spark-core"] * 6 + ["nope", "../x.yaml"]), "regions": st.lists(region, max_size=4)},
    optional={"meta": st.dictionaries(st.text(max_size=4), st.text(max_size=4)),
              "shared_sectors": st.sampled_from(["warn", "error", "warn", "maybe"])},
)


@st.composite
def with_one_junk_value(draw: st.DrawFn) -> dict[str, object]:
    """A plausible document with one value anywhere in it (or a new key) replaced by junk."""
    doc = draw(document)
    holders: list[dict[str, object]] = [doc]
    for r in doc["regions"]:  # type: ignore[attr-defined]
        holders += [r, r["source"]]
    holder = draw(st.sampled_from(holders))
    key = draw(st.sampled_from([*holder, "extra"]))
    holder[key] = draw(junk)
    return doc


def _tree(root: Path, firmware: Path) -> Path:
    (root / "web").mkdir(parents=True, exist_ok=True)
    (root / "empty").mkdir(exist_ok=True)
    (root / "web" / "index.html").write_text("<p>hi</p>")
    (root / "a.bin").write_bytes(bytes(range(256)) * 16)
    (root / "small.bin").write_bytes(b"x" * 100)
    shutil.copy(firmware, root / "fw.bin")
    return root / "release.yaml"


def _outcome(path: Path, fw: Path) -> str:
    try:
        plan = plan_release(path, artifacts={"firmware": fw})
    except InputError as e:
        msg = str(e)
        assert msg.startswith(f"{path}"), msg  # every error says which file (and a line)
        return "error"
    assert isinstance(plan, Plan)
    return "ok"


def test_random_text_never_crashes(tmp_path: Path, firmware: Path) -> None:
    path = _tree(tmp_path, firmware)

    @FUZZ
    @given(st.text(alphabet=st.sampled_from(list("abn:-{}[]&*!|>'\"#%@ \t\n0x1.,?")) | st.characters(), max_size=200))
    def run(text: str) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _outcome(path, tmp_path / "fw.bin")

    run()


def _run_documents(tmp_path: Path, firmware: Path, strategy: st.SearchStrategy[dict[str, object]]) -> set[str]:
    path = _tree(tmp_path, firmware)
    outcomes: set[str] = set()

    @FUZZ
    @given(strategy)
    def run(doc: dict[str, object]) -> None:
        path.write_text(yaml.safe_dump(doc, allow_unicode=False), encoding="utf-8")
        outcomes.add(_outcome(path, tmp_path / "fw.bin"))

    run()
    return outcomes


def test_release_shaped_documents_never_crash(tmp_path: Path, firmware: Path) -> None:
    # both ends are reached, so this test could fail either way
    assert _run_documents(tmp_path, firmware, document) == {"ok", "error"}


def test_documents_with_a_junk_value_never_crash(tmp_path: Path, firmware: Path) -> None:
    assert "error" in _run_documents(tmp_path, firmware, with_one_junk_value())
