"""What one peer may cost the cloud server (everything from outside is hostile)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    per_peer: int = 64  # live connections from one IP address
    handshake_s: float = 20.0  # nonce to device Hello
    idle_s: float = 60.0  # nothing from a device for this long: gone (it pings every 15 s when idle)
    frame: int = 640  # a Core's whole protocol buffer: it cannot send a longer frame
    pending_max: int = 100  # offered keys kept for approval
    pending_per_s: float = 1.0  # ...at most this many new ones per second (burst pending_burst)
    pending_burst: int = 10
