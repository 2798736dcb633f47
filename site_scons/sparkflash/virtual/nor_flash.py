"""NOR flash with real semantics, backed by an image file.

Erase sets a whole sector to 0xFF; programming can only clear bits (new = old & data),
so writing over unerased bytes corrupts them exactly as real flash would; protected
ranges ignore erase and program like the STM32 write-protection bits. Optional timing
follows the SST25VF016B datasheet; faults can reset the device mid-write.
"""

from __future__ import annotations

import mmap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FlashTiming", "SST25VF016B_TIMING", "STM32F1_TIMING", "DeviceReset", "NorFlash"]


class DeviceReset(Exception):
    """The simulated device reset in the middle of an operation (fault injection)."""


@dataclass(frozen=True)
class FlashTiming:
    erase_s: float  # per sector/page erase
    program_s_per_byte: float


# SST25VF016B: sector erase 18 ms typical / 25 ms max; AAI word program 10 us per 2 bytes.
SST25VF016B_TIMING = FlashTiming(erase_s=0.018, program_s_per_byte=5e-6)
# STM32F103: page erase ~20 ms, half-word program ~52 us.
STM32F1_TIMING = FlashTiming(erase_s=0.020, program_s_per_byte=26e-6)


class NorFlash:
    """One flash memory at `base`, `size` bytes, erased in `sector_size` units."""

    def __init__(
        self,
        path: Path,
        base: int,
        size: int,
        sector_size: int,
        *,
        protected: tuple[tuple[int, int], ...] = (),
        timing: FlashTiming | None = None,
        erase_value: int = 0xFF,
    ) -> None:
        self.base, self.size, self.sector_size = base, size, sector_size
        self.protected = protected  # (start, end) absolute, end exclusive
        self.timing = timing
        self.erase_value = erase_value
        self.lock = threading.RLock()
        self.reset_after_programs: int | None = None  # fault: DeviceReset on the Nth program call
        self.erase_count = 0
        self.program_count = 0
        if not path.exists() or path.stat().st_size != size:
            path.write_bytes(bytes([erase_value]) * size)
        self._f = open(path, "r+b")
        self._mm = mmap.mmap(self._f.fileno(), size)

    def close(self) -> None:
        with self.lock:
            if not self._mm.closed:
                self._mm.flush()
                self._mm.close()
                self._f.close()

    def _offset(self, address: int, length: int) -> int:
        if address < self.base or address + length > self.base + self.size or length < 0:
            raise ValueError(f"0x{address:08x}+{length} outside flash 0x{self.base:08x}..0x{self.base + self.size:08x}")
        return address - self.base

    def is_protected(self, address: int) -> bool:
        return any(s <= address < e for s, e in self.protected)

    def sector_start(self, address: int) -> int:
        return address - (address - self.base) % self.sector_size

    def read(self, address: int, length: int) -> bytes:
        with self.lock:
            o = self._offset(address, length)
            return bytes(self._mm[o : o + length])

    def erase_sector(self, address: int) -> bool:
        """Erase the sector containing `address`; False (nothing done) if it is protected."""
        start = self.sector_start(address)
        with self.lock:
            o = self._offset(start, self.sector_size)
            if self.is_protected(start):
                return False
            if self.timing:
                time.sleep(self.timing.erase_s)
            self._mm[o : o + self.sector_size] = bytes([self.erase_value]) * self.sector_size
            self.erase_count += 1
            return True

    def program(self, address: int, data: bytes) -> None:
        """Program bytes (AND into the array); bytes in protected ranges are left alone."""
        with self.lock:
            o = self._offset(address, len(data))
            self.program_count += 1
            if self.reset_after_programs is not None:
                if self.program_count >= self.reset_after_programs:
                    # Half of this write lands, then the device resets, as a brown-out would.
                    half = len(data) // 2
                    self._and(o, address, data[:half])
                    self.reset_after_programs = None
                    raise DeviceReset(f"reset while programming 0x{address:08x}")
            if self.timing:
                time.sleep(self.timing.program_s_per_byte * len(data))
            self._and(o, address, data)

    def _and(self, o: int, address: int, data: bytes) -> None:
        # whole-block integer AND, not a per-byte loop: the Core answers the GETSTATUS that programs a block only
        # after this, so its Python time would add to every block's latency on every host alike
        n = len(data)
        cur = self._mm[o : o + n]
        new = bytearray((int.from_bytes(cur, "little") & int.from_bytes(data, "little")).to_bytes(n, "little"))
        for s, e in self.protected:  # bytes in protected ranges keep their contents
            lo, hi = max(s, address) - address, min(e, address + n) - address
            if lo < hi:
                new[lo:hi] = cur[lo:hi]
        self._mm[o : o + n] = new

    def write_erased(self, address: int, data: bytes) -> bool:
        """Erase every touched sector, program, read back: what a device's 'save' does."""
        start = self.sector_start(address)
        for s in range(start, address + len(data), self.sector_size):
            self.erase_sector(s)
        self.program(address, data)
        return self.read(address, len(data)) == data
