"""Rendering for the CLI: progress bars on stderr, or JSON Lines events on stdout (--json)."""

from __future__ import annotations

import json
import sys
from typing import Any

from tqdm import tqdm

__all__ = ["Reporter", "hexint"]


def hexint(s: str) -> int:
    """argparse type: 0x-prefixed hex or decimal."""
    try:
        return int(s, 0)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"not a number: {s!r} (use 0x80000 or 524288)") from None


class Reporter:
    """Consumes deploy events (see deploy.run); one instance per command."""

    def __init__(self, as_json: bool, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self._bars: dict[str, tqdm] = {}  # type: ignore[type-arg]

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
                  f"({ev['regions']} regions)", file=sys.stderr)
        elif kind == "region-start":
            self._bars[key] = tqdm(total=ev["size"], unit="B", unit_scale=True, file=sys.stderr, leave=True,
                                   desc=f"{ev['region']} @0x{ev['address']:x}", disable=None)
        elif kind == "progress" and key in self._bars:
            bar = self._bars[key]
            bar.total = ev["total"]
            bar.update(ev["done"] - bar.n)
        elif kind == "region-done":
            bar = self._bars.pop(key, None)
            if bar is not None:
                bar.close()
            extra = f" ({ev['sectors_skipped']} sectors unchanged)" if ev.get("sectors_skipped") else ""
            msg = f"  {ev['region']}: {ev['status']}{extra}"
            if ev.get("error"):
                msg += f": {ev['error']}"
            elif ev.get("proves") and ev["status"] not in ("verified", "unchanged"):
                msg += f" ({ev['proves']})"
            print(msg, file=sys.stderr)
        elif kind == "deploy-done":
            print("Done: every region ok (see each status)." if ev["ok"] else "FAILED: see the region errors above.", file=sys.stderr)
        elif kind == "message":
            print(ev["text"], file=sys.stderr)

    def result(self, doc: dict[str, Any]) -> None:
        """The final summary document (JSON mode: one line with event=result)."""
        if self.as_json:
            print(json.dumps({"event": "result", **doc}, sort_keys=True), flush=True)
