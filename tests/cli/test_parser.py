"""The command line keeps its own promises, checked by walking the parser: every command has
help on every argument, --json, -q and -v, and under --json every error path ends in one
JSON result line with ok, error and exit_code (the same code main returns)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkflash.cli import EXIT_CODES, build_parser, main

Argv = Callable[[Path], list[str]]


def leaves(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: p}
    out: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for s in subs:
        assert s.metavar == "COMMAND", f"{' '.join(path) or 'sparkflash'}: placeholder {s.metavar!r}"
        for name, child in s.choices.items():
            out.update(leaves(child, (*path, name)))
    return out


LEAVES = leaves(build_parser())

# One failing invocation per command; each must fail before any device, server or network is reached.
ERRORS: dict[tuple[str, ...], tuple[Argv, int]] = {
    ("keys", "generate"): (lambda t: [], 2),
    ("keys", "id"): (lambda t: [str(t / "missing.pub.pem")], 2),
    ("keys", "export-public"): (lambda t: [str(t / "missing.pem"), str(t / "out.pub.pem")], 2),
    ("keys", "root", "init"): (lambda t: [str(t / "trust"), "--root-key", str(t / "missing.pub.pem"), "--manifest-key",
                                          str(t / "missing.pub.pem"), "--channel-key", str(t / "missing.pub.pem")], 2),
    ("keys", "root", "add-key"): (lambda t: [str(t / "missing"), "--role", "manifest", str(t / "missing.pub.pem")], 2),
    ("keys", "root", "remove-key"): (lambda t: [str(t / "missing"), "--role", "manifest", "0" * 64], 2),
    ("keys", "root", "renew"): (lambda t: [str(t / "missing")], 2),
    ("keys", "root", "sign"): (lambda t: [str(t / "missing"), "--key", str(t / "missing.pem")], 2),
    ("keys", "root", "show"): (lambda t: [str(t / "missing")], 2),
    ("keys", "root", "push"): (lambda t: [str(t / "missing"), "s3://bucket/prefix"], 2),
    ("manifest", "build"): (lambda t: [str(t / "missing.yaml"), "--out", str(t / "out")], 2),
    ("manifest", "show"): (lambda t: [str(t / "missing.yaml")], 2),
    ("manifest", "verify"): (lambda t: [str(t / "missing"), "--trust", str(t / "missing.pub.pem")], 2),
    ("manifest", "sign"): (lambda t: [str(t / "missing"), "--key", str(t / "missing.pem")], 2),
    ("deploy",): (lambda t: [str(t / "missing" / "manifest.json"), "--via", "dfu"], 2),
    ("flash",): (lambda t: [str(t / "missing.bin"), "-a", "0x80000", "--via", "dfu"], 2),
    ("virtual-core",): (lambda t: ["--state", str(t / "core"), "--endpoints", "serial,bogus"], 2),
    ("dfu", "pack"): (lambda t: ["0x80000", str(t / "missing.bin"), "-o", str(t / "x.dfu")], 2),
    ("dfu", "list"): (lambda t: ["-d", f"virtual:{t / 'no-core'}"], 4),
    ("dfu", "info"): (lambda t: [str(t / "missing.dfu")], 2),
    ("cloud", "serve"): (lambda t: ["--key", str(t / "missing.der"), "--devices", str(t / "devs"),
                                    "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"], 2),
    ("cloud", "register"): (lambda t: [str(t / "missing.pub.pem"), "--devices", str(t / "devs")], 2),
    ("cloud", "keygen"): (lambda t: ["--out", str(t / "exists.der")], 2),
    ("cloud", "devices"): (lambda t: ["--cloud", "ftp://x", "--cloud-token", str(t / "missing-token")], 2),
    ("cloud", "label"): (lambda t: ["0" * 24, "north", "--cloud", "ftp://x", "--cloud-token", str(t / "missing")], 2),
    ("rollout", "create"): (lambda t: ["/etc/passwd", "--cloud", "ftp://x", "--cloud-token", str(t / "missing")], 2),
    ("rollout", "status"): (lambda t: ["r1", "--cloud", "ftp://x", "--cloud-token", str(t / "missing")], 2),
    ("rollout", "list"): (lambda t: ["--cloud", "ftp://x", "--cloud-token", str(t / "missing")], 2),
    ("rollout", "pause"): (lambda t: ["r1", "--cloud", "ftp://x", "--cloud-token", str(t / "missing")], 2),
    ("rollout", "resume"): (lambda t: ["r1", "--cloud", "ftp://x", "--cloud-token", str(t / "missing")], 2),
    ("rollout", "abort"): (lambda t: ["r1", "--cloud", "ftp://x", "--cloud-token", str(t / "missing")], 2),
    ("publish",): (lambda t: [str(t / "missing"), "s3://bucket/prefix"], 2),
    ("s3-local",): (lambda t: ["--listen", "192.0.2.1:0"], 2),
    ("plan",): (lambda t: [str(t / "missing" / "manifest.json"), "--via", "dfu"], 2),
    ("read",): (lambda t: ["0x80000", "0x10", "-o", str(t / "x.bin"), "-d", f"virtual:{t / 'no-core'}"], 4),
    ("erase",): (lambda t: ["0x80000", "0x1000", "-d", f"virtual:{t / 'no-core'}"], 4),
    ("reset",): (lambda t: ["--via", "serial", "--dfu"], 2),
    ("devices",): (lambda t: ["--cloud", "ftp://x", "--virtual", str(t / "no-core")], 2),
    ("monitor",): (lambda t: [str(t / "no-such-tty")], 4),
}


def test_the_error_table_covers_every_command() -> None:
    assert set(ERRORS) == set(LEAVES)


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_argument_has_help_and_the_common_options(path: tuple[str, ...]) -> None:
    p = LEAVES[path]
    assert p.description or path == ("cloud", "serve") or p.format_help(), path
    missing = [a.option_strings or a.dest for a in p._actions
               if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS and not (a.help or "").strip()]
    assert missing == [], f"{' '.join(path)}: arguments without help: {missing}"
    opts = set(p._option_string_actions)
    assert {"--json", "-q", "--quiet", "-v", "--verbose"} <= opts, f"{' '.join(path)}: {sorted(opts)}"
    text = p.format_help()
    assert "['" not in text and "('" not in text, f"{' '.join(path)}: a Python repr in --help:\n{text}"


@pytest.mark.parametrize("path", sorted(ERRORS), ids=" ".join)
def test_every_command_reports_its_error_as_one_json_result(path: tuple[str, ...], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "exists.der").write_bytes(b"not overwritten")
    make_argv, want = ERRORS[path]
    capsys.readouterr()
    code = main([*path, *make_argv(tmp_path), "--json"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines, f"{' '.join(path)}: nothing on stdout under --json (stderr: {err})"
    doc = json.loads(lines[-1])
    assert doc["event"] == "result" and doc["ok"] is False and doc["error"], doc
    assert code == want == doc["exit_code"], (code, doc)
    assert all(json.loads(ln) for ln in lines), "every stdout line is JSON"
    assert "Traceback" not in err and err.strip().startswith("sparkflash: error:"), err
    assert (tmp_path / "exists.der").read_bytes() == b"not overwritten"


def test_usage_errors_under_json_give_a_result_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["deploy", "--json"])  # no SOURCE, no --via
    assert e.value.code == 2
    doc = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert doc["ok"] is False and doc["exit_code"] == 2 and "required" in doc["error"]


def test_exit_codes_are_listed_in_the_help_and_the_readme() -> None:
    text = " ".join(build_parser().format_help().split())  # the help wraps lines anywhere
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for code in EXIT_CODES:
        assert f"{code} " in text
        assert f"| {code} |" in readme, f"README has no row for exit code {code}"


def test_shell_completion_offers_commands_and_options(tmp_path: Path) -> None:
    """argcomplete's protocol, as bash drives it: the words come back in a file."""
    out = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    for line, want in (("sparkflash dep", {"deploy"}), ("sparkflash deploy --vi", {"--via"}),
                       ("sparkflash flash --via ", {"dfu", "serial", "ota"})):
        env.update(COMP_LINE=line, COMP_POINT=str(len(line)))
        subprocess.run([sys.executable, "-m", "sparkflash"], env=env, check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        words = {w.strip() for w in out.read_text().split("\n") if w.strip()}
        assert want <= words, (line, words)


@pytest.mark.parametrize(("old", "new"), [
    (["publish", "d", "s3://b/p", "--region", "eu-west-1"], ("aws_region", "eu-west-1")),
    (["s3-local", "--port", "0"], ("port", 0)),
    (["cloud", "serve", "--key", "k", "--devices", "d", "--host", "127.0.0.1"], ("host", "127.0.0.1")),
    (["keys", "generate", "k.pem"], ("path", Path("k.pem"))),
    (["dfu", "pack", "0x80000", "f.bin", "--output", "x.dfu"], ("out", Path("x.dfu"))),
])
def test_old_spellings_still_parse_but_are_hidden(old: list[str], new: tuple[str, object]) -> None:
    args = build_parser().parse_args(old)
    assert getattr(args, new[0]) == new[1]
    flag = next((w for w in old if w in ("--region", "--port", "--host", "--output")), None)
    if flag is not None:
        leaf = LEAVES[tuple(w for w in old[:2] if not w.startswith("-") and w in {p for k in LEAVES for p in k})]
        assert flag not in leaf.format_help(), f"{flag} should be hidden from --help"
