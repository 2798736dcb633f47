"""The cloud package's layering: a session knows only the narrow interface it reports through."""

from __future__ import annotations

import ast
from pathlib import Path

import sparkflash.cloud

CLOUD = Path(sparkflash.cloud.__file__).parent


def imported(module: str) -> set[str]:
    """Every module a file imports, TYPE_CHECKING blocks included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse((CLOUD / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_sessions_and_transfers_do_not_import_the_server() -> None:
    for module in ("session", "flasher", "limits", "releases", "registry"):
        assert "sparkflash.cloud.server" not in imported(module), module
        assert "sparkflash.cloud.admin" not in imported(module), module


def test_the_server_implements_what_a_session_reports_through() -> None:
    from sparkflash.cloud.server import CloudServer
    from sparkflash.cloud.session import SessionHost

    wanted = {n for n in vars(SessionHost) if not n.startswith("_")}
    assert wanted == {"limits", "rsa", "registered", "refuse", "attach", "detach"}
    assert all(hasattr(CloudServer, n) or n in ("limits", "rsa") for n in wanted)
