"""`sparkflash s3-local` without its extra: one line naming the extra to install, exit 2."""

from __future__ import annotations

import sys

import pytest

from sparkflash.cli import main


@pytest.mark.parametrize("missing", ["werkzeug", "moto"])
def test_missing_server_dependency_names_the_extra(missing: str, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for mod in [m for m in sys.modules if m == missing or m.startswith(missing + ".")] + [missing]:
        monkeypatch.setitem(sys.modules, mod, None)  # None in sys.modules: `import` raises ImportError
    monkeypatch.setitem(sys.modules, "moto.moto_server.werkzeug_app", None)
    assert main(["s3-local", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'sparkflash[s3-local]'" in err and "Traceback" not in err
    assert err.count("\n") == 1
