"""Fault switches for the virtual core's links: drop after N bytes, corrupt byte N.

Parsed from `--fault drop@N`, `--fault corrupt@N`, `--fault reset@N` (reset on the Nth
flash program operation). Links count received bytes through `on_rx`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkflash.errors import InputError

__all__ = ["LinkDropped", "Faults"]


class LinkDropped(Exception):
    """The simulated link went away (cable pulled, Wi-Fi lost)."""


@dataclass
class Faults:
    drop_after: int | None = None
    corrupt_at: int | None = None
    reset_after_programs: int | None = None
    rx_count: int = 0

    @classmethod
    def parse(cls, specs: list[str]) -> Faults:
        f = cls()
        for s in specs:
            kind, _, n = s.partition("@")
            if not n.isdigit() or kind not in ("drop", "corrupt", "reset"):
                raise InputError(f"bad fault {s!r}: use drop@BYTES, corrupt@BYTE or reset@WRITES")
            setattr(f, {"drop": "drop_after", "corrupt": "corrupt_at", "reset": "reset_after_programs"}[kind], int(n))
        return f

    def on_rx(self, data: bytes) -> bytes:
        """Apply link faults to bytes the device receives; one-shot each."""
        start = self.rx_count
        self.rx_count += len(data)
        if self.corrupt_at is not None and start <= self.corrupt_at < self.rx_count:
            i = self.corrupt_at - start
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
            self.corrupt_at = None
        if self.drop_after is not None and self.rx_count > self.drop_after:
            self.drop_after = None
            raise LinkDropped(f"link dropped after {start} bytes")
        return data
