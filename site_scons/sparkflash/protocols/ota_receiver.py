"""The device side of an OTA transfer, as a Core behaves (spark-cloud-protocol.md §6, §8, §9).

Two dialects, each as strict and as lenient as the real code (checked against it by
tests/ota/test_differential.py):
* "os" (Device OS v0.4.9 on a Core): parses the UpdateBegin payload, offers fast OTA,
  stores chunk i at its index. A destination other than firmware erases the range and
  then discards every chunk (system_update.cpp writes only firmware); POST /s is taken as
  an UpdateBegin with defaults, i.e. a firmware update.
* "ccl" (core-communication-lib 0.3.x): ignores the payload, erases the whole 128 KB OTA
  slot, appends each chunk (of any size) in arrival order, re-requests after 3 s. With
  `save_begin` (the flasher_additions branch) POST /s stores a file at its address;
  without it POST /s gets no reply at all.
Flash access goes through `FlashTarget`; time comes in as `now`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sparkflash.protocols import coap
from sparkflash.protocols.coap import Message, MessageIds
from sparkflash.protocols.ota import (
    DEST_FIRMWARE,
    FLAG_FAST,
    chunk_missed,
    chunk_received,
    crc32,
    device_update_done,
    empty_ack,
    parse_chunk,
    parse_save_begin,
    parse_update_begin,
    update_ready,
)

__all__ = ["FlashTarget", "DeviceTiming", "Finished", "OtaReceiver"]

OTA_SLOT, OTA_SLOT_SIZE, FIRMWARE_MAX = 0x60000, 0x20000, 0x1B000
DEFAULT_CHUNK = 512  # HAL_OTA_ChunkSize on a Core
MISSED_BATCH = 50


class FlashTarget(Protocol):
    def erase(self, address: int, size: int) -> bool:
        """Erase the sectors covering address..+size; False if refused (protected, out of range)."""
        ...

    def write(self, address: int, data: bytes) -> bool:
        """Program and read back; False on mismatch."""
        ...

    def sector_start(self, address: int) -> int: ...


@dataclass(frozen=True)
class DeviceTiming:
    rerequest_s: float = 3.0  # no chunk for 3 s -> ChunkMissed (0.3.x) / repeat missing list (OS)
    watchdog_s: float = 30.0  # no progress for 30 s while updating -> reset

    def scaled(self, k: float) -> DeviceTiming:
        return DeviceTiming(self.rerequest_s * k, self.watchdog_s * k)


@dataclass(frozen=True)
class Finished:
    firmware: bool  # True: the device now resets and the bootloader installs the OTA slot
    watchdog: bool = False


class OtaReceiver:
    def __init__(self, target: FlashTarget, ids: MessageIds, *, dialect: str = "os",
                 timing: DeviceTiming = DeviceTiming(), save_begin: bool = False) -> None:
        self.target, self.ids, self.dialect, self.timing = target, ids, dialect, timing
        self.save_begin = save_begin and dialect == "ccl"
        self.updating = False
        self.finished: Finished | None = None
        self.next_deadline: float | None = None
        self.chunks_ok = 0
        self.bad_crc = 0

    # -- begin ------------------------------------------------------------------------
    def _begin(self, dest: int, address: int, size: int, chunk_size: int, fast: bool, now: float) -> bool:
        if dest == DEST_FIRMWARE:
            base = OTA_SLOT + address
            ok = base + size <= OTA_SLOT + OTA_SLOT_SIZE and self.target.erase(base, size)
        else:
            base = address
            ok = self.target.erase(base, size)
        if not ok or chunk_size == 0 or -(-size // chunk_size) >= 0xFFFF:
            return False
        self.updating, self.dest, self.base, self.size, self.chunk_size = True, dest, base, size, chunk_size
        self.count = -(-size // chunk_size)
        self.fast, self.have, self.pointer, self.missing_phase = fast, bytearray(self.count), 0, False
        self.addr = base  # 0.3.x: the write pointer, advanced by each chunk's length
        self.last_chunk = self.last_progress = now
        self.next_deadline = self._deadline()
        return True

    def _deadline(self) -> float | None:
        if not self.updating:
            return None
        rereq = self.last_chunk + self.timing.rerequest_s
        if self.dialect == "os" and not self.missing_phase:
            rereq = float("inf")  # Device OS dropped the 3-s re-request (it caused duplicates) but for the missing list
        return min(rereq, self.last_progress + self.timing.watchdog_s)

    def _on_update_begin(self, m: Message, now: float) -> list[Message]:
        params = parse_update_begin(m) if self.dialect == "os" else None
        if params is None:  # defaults: firmware, 512-byte chunks, the whole application area
            flags, chunk_size, size, dest, address = 0, DEFAULT_CHUNK, FIRMWARE_MAX, DEST_FIRMWARE, 0
            if self.dialect == "ccl":
                size = OTA_SLOT_SIZE  # 0.3.x erases the whole slot
        else:
            flags, chunk_size, size, dest, address = params
        fast = self.dialect == "os" and bool(flags & FLAG_FAST)
        if not self._begin(dest, address, size, chunk_size, fast, now):
            return [Message(coap.ACK, coap.BAD_REQUEST, m.mid)]  # UpdateAbort
        ready = update_ready(self.ids.next_mid(), m.token, fast if self.dialect == "os" else None)
        return [empty_ack(m.mid), ready]

    def _on_save_begin(self, m: Message, now: float) -> list[Message]:
        if self.dialect == "os":  # too short for the payload test: a firmware UpdateBegin with defaults
            return self._on_update_begin(Message(m.type, m.code, m.mid, m.token, m.options), now)
        if not self.save_begin:  # stock 0.3.x: no such request, no reply at all
            return []
        address, size = parse_save_begin(m)
        if not self._begin(1, address, size, DEFAULT_CHUNK, False, now):
            return [Message(coap.ACK, coap.BAD_REQUEST, m.mid)]
        return [empty_ack(m.mid), update_ready(self.ids.next_mid(), m.token, False if self.dialect == "os" else None)]

    # -- chunks -----------------------------------------------------------------------
    def _on_chunk(self, m: Message, now: float) -> list[Message]:
        out = [empty_ack(m.mid)]
        if not self.updating:
            return out
        crc, index, data = parse_chunk(m)
        self.last_chunk = now
        if self.dialect == "ccl":
            return out + self._ccl_chunk(m, crc, index, data, now)
        if crc32(data) != crc or not data:
            self.bad_crc += 1
            if index is None:
                out.append(chunk_received(self.ids.next_mid(), m.token, False))
            self.next_deadline = self._deadline()
            return out
        i = self.pointer if index is None else index
        if i >= self.count:
            return out
        if self.dest == DEST_FIRMWARE:  # any other store: erased at begin, chunks discarded (still 2.04)
            self.target.write(self.base + i * self.chunk_size, data[: self.chunk_size])
        self.last_progress = now
        self.chunks_ok += 1
        self.have[i] = 1
        if index is None:
            self.pointer += 1
        if not self.missing_phase:
            out.append(chunk_received(self.ids.next_mid(), m.token, True))
        elif all(self.have):
            out.append(device_update_done(self.ids.next_mid()))
            self._finish()
        self.next_deadline = self._deadline()
        return out

    def _ccl_chunk(self, m: Message, crc: int, index: int | None, data: bytes, now: float) -> list[Message]:
        """0.3.x: the data is everything after the CRC option (an index option would be data),
        appended at the write pointer, read back; a mismatch rolls back to the sector start."""
        if index is not None:
            data = index.to_bytes(2, "big") + b"\xff" + data  # it reads data from fixed offset 13
        if crc32(data) != crc:
            self.bad_crc += 1
            self.next_deadline = self._deadline()
            return [chunk_received(self.ids.next_mid(), m.token, False)]
        self.chunk_size = len(data)
        if self.target.write(self.addr, data):
            self.addr += len(data)
            self.pointer += 1
            self.last_progress = now
            self.chunks_ok += 1
            self.next_deadline = self._deadline()
            return [chunk_received(self.ids.next_mid(), m.token, True)]
        self.addr = self.target.sector_start(self.addr)
        self.target.erase(self.addr, 1)
        self.pointer = (self.addr - self.base) // len(data)
        self.next_deadline = self._deadline()
        return [chunk_missed(self.ids.next_mid(), [self.pointer])]

    def _missing(self) -> list[int]:
        return [i for i in range(self.count) if not self.have[i]][:MISSED_BATCH]

    def _on_update_done(self, m: Message, now: float) -> list[Message]:
        if self.updating and self.fast and not all(self.have):
            self.missing_phase, self.last_chunk = True, now
            self.next_deadline = self._deadline()
            return [Message(coap.ACK, coap.BAD_REQUEST, m.mid, m.token), chunk_missed(self.ids.next_mid(), self._missing())]
        if not self.updating:  # 0.3.x answers and "finishes" even with no update: reboots into the slot
            self.dest = DEST_FIRMWARE
        self._finish()
        return [Message(coap.ACK, coap.CHANGED, m.mid, m.token)]

    def _finish(self) -> None:
        self.finished = Finished(firmware=self.dest == DEST_FIRMWARE)
        self.updating, self.next_deadline = False, None

    # -- dispatch ---------------------------------------------------------------------
    def handles(self, m: Message) -> bool:
        return (m.code == coap.POST and m.path in ("u", "s", "c")) or (m.code == coap.PUT and m.path == "u")

    def receive(self, m: Message, now: float) -> list[Message]:
        if m.code == coap.POST and m.path == "u":
            return self._on_update_begin(m, now)
        if m.code == coap.POST and m.path == "s":
            return self._on_save_begin(m, now)
        if m.code == coap.POST and m.path == "c":
            return self._on_chunk(m, now)
        if m.code == coap.PUT and m.path == "u":
            return self._on_update_done(m, now)
        return []

    def on_timeout(self, now: float) -> list[Message]:
        if not self.updating or self.next_deadline is None or now < self.next_deadline:
            return []
        if now >= self.last_progress + self.timing.watchdog_s:
            self.updating, self.next_deadline = False, None
            self.finished = Finished(firmware=False, watchdog=True)
            return []
        self.last_chunk = now
        self.next_deadline = self._deadline()
        if self.missing_phase:
            return [chunk_missed(self.ids.next_mid(), self._missing())]
        return [chunk_missed(self.ids.next_mid(), [self.pointer])]
