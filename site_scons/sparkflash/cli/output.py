"""Rendering for the CLI: progress bars on stderr, or JSON Lines events on stdout (--json).

Sizes are binary (KiB, MiB), as flash sectors are; no Python repr reaches the user.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

__all__ = ["Reporter", "hexint", "fmt_size", "plural", "listing", "add_common_options", "error_result", "say"]


def hexint(s: str) -> int:
    """argparse type: 0x-prefixed hex or decimal."""
    try:
        return int(s, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r} (use 0x80000 or 524288)") from None


def fmt_size(n: float) -> str:
    """Bytes in binary units: 312 B, 64 KiB, 1.5 MiB."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{int(n)} B"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def listing(items: Iterable[object]) -> str:
    """A list as people write it: serial, dfu (not ['serial', 'dfu'])."""
    return ", ".join(str(i) for i in items) or "none"


def add_common_options(p: argparse.ArgumentParser) -> None:
    """--json, -q/--quiet and -v/--verbose on every command (kept where a command defines them)."""
    have = set(p._option_string_actions)
    g = p.add_argument_group("output")
    if "--json" not in have:
        g.add_argument("--json", action="store_true",
                       help="JSON Lines on stdout; the last line is the result (ok, error, exit_code)")
    if "-q" not in have and "--quiet" not in have:
        g.add_argument("-q", "--quiet", action="store_true", help="print only errors (and the result under --json)")
    if "-v" not in have and "--verbose" not in have:
        g.add_argument("-v", "--verbose", action="count", default=0, help="more detail on stderr (-vv: debug log)")


def error_result(message: str, code: int, kind: str = "InputError") -> dict[str, Any]:
    return {"event": "result", "ok": False, "error": message, "error_type": kind, "exit_code": code}


def say(args: argparse.Namespace, text: str) -> None:
    """A human progress/info line on stderr, unless -q or --json."""
    if not getattr(args, "quiet", False) and not getattr(args, "json", False):
        print(text, file=sys.stderr, flush=True)


class _SizeBar(tqdm):  # type: ignore[type-arg]
    """tqdm with binary units (tqdm's unit_scale prints decimal kB/MB)."""

    @property
    def format_dict(self) -> dict[str, Any]:
        d = dict(super().format_dict)
        d["sizes"] = f"{fmt_size(d['n'])}/{fmt_size(d['total'] or 0)}"
        return d


class Reporter:
    """Consumes deploy events (see deploy.run); one instance per command."""

    def __init__(self, as_json: bool, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self._bars: dict[str, tqdm[Any]] = {}

    def __call__(self, ev: dict[str, Any]) -> None:
        if self.as_json:
            if ev["event"] != "progress" or ev["done"] == ev["total"]:
                print(json.dumps(ev, sort_keys=True), flush=True)
            return
        if self.quiet:
            return
        kind = ev["event"]
        key = f"{ev.get('device', '')}/{ev.get('region', '')}"
        if kind == "deploy-start":
            print(f"Deploying {ev['release']} {ev['version']} to {ev['device']} via {ev['via']} "
                  f"({plural(int(ev['regions']), 'region')})", file=sys.stderr)
        elif kind == "region-start":
            self._bars[key] = _SizeBar(total=ev["size"], file=sys.stderr, leave=True, disable=None,
                                       desc=f"{ev['region']} @0x{ev['address']:x}",
                                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {sizes} [{elapsed}]")
        elif kind == "progress" and key in self._bars:
            bar = self._bars[key]
            bar.total = ev["total"]
            bar.update(ev["done"] - bar.n)
        elif kind == "region-done":
            if key in self._bars:
                self._bars.pop(key).close()
            extra = f" ({plural(int(ev['sectors_skipped']), 'sector')} unchanged)" if ev.get("sectors_skipped") else ""
            msg = f"  {ev['region']}: {ev['status']}{extra}"
            if ev.get("proves") and ev["status"] not in ("verified", "unchanged", "failed", "skipped"):
                msg += f" ({ev['proves']})"
            if ev.get("error"):
                msg += f": {ev['error']}"
            elif ev.get("proves") and ev["status"] not in ("verified", "unchanged"):
                msg += f" ({ev['proves']})"
            print(msg, file=sys.stderr)
        elif kind == "deploy-done":
            print("Done: every region ok (see each status)." if ev["ok"] else "FAILED: see the region errors above.",
                  file=sys.stderr)
        elif kind == "message":
            print(ev["text"], file=sys.stderr)

    def result(self, doc: dict[str, Any]) -> None:
        """The final summary document (JSON mode: one line with event=result)."""
        if self.as_json:
            print(json.dumps({"event": "result", **doc}, sort_keys=True), flush=True)
