"""Progress for parallel deploys: one tqdm bar per device (fixed positions), messages above them.

A sequential deploy keeps `output.Reporter` (a bar per region); with several devices each
gets one bar for its whole deploy, at its own line, and the region results are written
above the bars so they never tear them. JSON mode is unchanged (events carry `target`).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from tqdm import tqdm

from sparkflash.cli.output import Reporter

__all__ = ["ParallelReporter"]


class ParallelReporter(Reporter):
    def __init__(self, as_json: bool, targets: list[str], sizes: int) -> None:
        super().__init__(as_json)
        self._lock = threading.Lock()
        self._order = {t: i for i, t in enumerate(targets)}
        self._size = sizes  # bytes of all selected regions: each device's bar total
        self._dev_bars: dict[str, tqdm] = {}  # type: ignore[type-arg]
        self._base: dict[str, int] = {}  # bytes of the regions a device finished
        self._width = max((len(t) for t in targets), default=8)

    def _bar(self, target: str) -> tqdm:  # type: ignore[type-arg]
        bar = self._dev_bars.get(target)
        if bar is None:
            bar = tqdm(total=self._size, unit="B", unit_scale=True, file=sys.stderr, leave=True,
                       position=self._order.setdefault(target, len(self._order)), dynamic_ncols=True,
                       desc=target.ljust(self._width), disable=None)
            self._dev_bars[target] = bar
            self._base[target] = 0
        return bar

    def __call__(self, ev: dict[str, Any]) -> None:
        if self.as_json:
            super().__call__(ev)
            return
        with self._lock:
            self._show(ev)

    def _show(self, ev: dict[str, Any]) -> None:
        target = str(ev.get("target", ev.get("device", "")))
        kind = ev["event"]
        if kind == "deploy-start":
            self._bar(target).set_postfix_str(f"{ev['release']} {ev['version']} via {ev['via']}")
        elif kind == "region-start":
            self._bar(target).set_postfix_str(f"{ev['region']} @0x{ev['address']:x}")
        elif kind == "progress":
            bar = self._bar(target)
            bar.update(max(0, self._base[target] + int(ev["done"]) - bar.n))
        elif kind == "region-done":
            bar = self._bar(target)
            self._base[target] += int(ev["size"])
            bar.update(max(0, self._base[target] - bar.n))
            extra = f" ({ev['sectors_skipped']} sectors unchanged)" if ev.get("sectors_skipped") else ""
            err = f": {ev['error']}" if ev.get("error") else ""
            tqdm.write(f"  {target}: {ev['region']}: {ev['status']}{extra}{err}", file=sys.stderr)
        elif kind == "deploy-done":
            bar = self._bar(target)
            bar.set_postfix_str("done" if ev.get("ok") else "FAILED")
        elif kind == "message":
            tqdm.write(str(ev["text"]), file=sys.stderr)

    def summary(self, results: list[Any]) -> None:
        """One line for all devices, after every bar is closed."""
        if self.as_json:
            return
        with self._lock:
            # tqdm would leave positioned bars in the order it closes them; print them in device order instead
            bars = sorted(self._dev_bars.items(), key=lambda kv: self._order.get(kv[0], 0))
            final = [str(bar) for _, bar in bars if not bar.disable]
            for _, bar in reversed(bars):
                bar.leave = False
                bar.close()
            self._dev_bars.clear()
            for line in final:
                print(line, file=sys.stderr)
        ok = [r for r in results if r.ok]
        print(f"Done: {len(results)} devices, {len(ok)} verified, {len(results) - len(ok)} failed"
              + "".join(f"\n  {r.device}: FAILED" for r in results if not r.ok), file=sys.stderr)
