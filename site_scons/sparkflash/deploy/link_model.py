"""How long a write takes on each link: the figures `sparkflash plan` estimates with.

DFU: the Core's bwPollTimeout per request (internal flash 50 ms; SPI flash 20 ms per erase,
30 ms per block; `protocols.dfuse_device.POLL_MS`, taken from the bootloader) plus about 2 ms
of USB full-speed control transfer per 1 KiB request. Serial: YMODEM 1K framing (1029 bytes
per 1024) at 10 bits per byte, at the 0.98 of line rate our sender measures (bench/RESULTS.md),
plus the SST25VF016B's 18 ms sector erase and 5 us/byte AAI program. OTA: the 0.845 of link
rate fast OTA measures on the benchmark link (1 Mbit/s, 100 ms RTT) unless told otherwise.
Estimates, not promises: they exist to compare plans, and the benchmarks keep them honest.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkflash.protocols.dfuse_device import POLL_MS

__all__ = ["USB_REQUEST_S", "DfuLink", "OtaLinkModel", "SerialLinkModel"]

USB_REQUEST_S = 0.002  # one 1 KiB control transfer (setup, 16 data packets, status) plus host turnaround
SPI_ERASE_S, SPI_PROGRAM_S_PER_BYTE = 0.018, 5e-6  # SST25VF016B datasheet, typical


@dataclass(frozen=True)
class DfuLink:
    transfer_size: int = 1024

    def seconds(self, memory: str, *, erases: int, blocks: int, read_bytes: int) -> float:
        erase_ms, block_ms = POLL_MS.get(memory, (50, 50))
        reads = -(-read_bytes // self.transfer_size)
        return (erases * (erase_ms / 1000 + USB_REQUEST_S) + blocks * (block_ms / 1000 + USB_REQUEST_S)
                + reads * USB_REQUEST_S)


@dataclass(frozen=True)
class SerialLinkModel:
    baud: int = 115200
    efficiency: float = 0.98

    def wire_bytes(self, payload: int) -> int:
        """YMODEM-1K: header block (133), 1029 per 1 KiB block, EOT exchange, end block."""
        return 133 + -(-payload // 1024) * 1029 + 2 + 133 if payload else 0

    def seconds(self, *, payload: int, erases: int) -> float:
        line = self.wire_bytes(payload) * 10 / self.baud / self.efficiency
        return line + erases * SPI_ERASE_S + payload * SPI_PROGRAM_S_PER_BYTE


@dataclass(frozen=True)
class OtaLinkModel:
    bytes_per_s: float = 1e6 / 8
    rtt_s: float = 0.1
    efficiency: float = 0.845
    chunk: int = 512

    def seconds(self, *, payload: int, erases: int) -> float:
        if not payload:
            return 0.0
        return (2 * self.rtt_s + payload / (self.bytes_per_s * self.efficiency) + erases * SPI_ERASE_S
                + payload * SPI_PROGRAM_S_PER_BYTE)
