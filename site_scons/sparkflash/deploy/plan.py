"""`sparkflash plan` / `deploy --dry-run`: what a deploy would erase, write and skip, and how long.

Per region and transport: the sectors it touches, those to erase, to write and to skip,
the bytes that would cross the link, and a time estimate from `link_model`. With a
device the plan is exact where the device can tell: DFU reads the touched sectors back
(what the deploy itself does first); serial asks the device's digest of the region (an
agent answers SUM; stock firmware cannot, so every sector counts as to write). Without
a device, or by OTA, every touched sector counts as changed. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sparkflash.boards import Board
from sparkflash.deploy.dfu_plan import chunks, plan_write
from sparkflash.deploy.link_model import DfuLink, OtaLinkModel, SerialLinkModel
from sparkflash.manifest.model import Region

__all__ = ["RegionPlan", "plan_dfu", "plan_stream", "totals"]

OTA_SLOT_SECTOR = 0x1000  # firmware by serial/OTA lands in the external OTA slot (4 KiB sectors)


@dataclass
class RegionPlan:
    region: str
    memory: str
    address: int
    size: int
    via: str
    sectors: int  # touched
    erase: int
    write: int
    skip: int
    bytes_to_send: int
    seconds: float
    device_read: bool  # True: from the device's own contents/digest; False: assumed all changed
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


def plan_dfu(board: Board, region: Region, data: bytes, read: Callable[[int, int], bytes] | None,
             *, no_skip: bool = False, link: DfuLink | None = None) -> RegionPlan:
    """`read(address, length)` = the device's current bytes (None: no device, assume changed)."""
    link = link or DfuLink()
    mem = board.memory(region.memory)
    sectors = mem.sectors(region.address, region.size)
    start, end = sectors[0], min(sectors[-1] + mem.sector_size, mem.end)
    current = read(start, end - start) if read is not None else b"\x00" * (end - start)
    plan = plan_write(start, mem.sector_size, current, region.address, data, force=no_skip or read is None,
                      erased=mem.erase_value)
    erase = [s for s in plan.changed if s not in plan.blank]
    blocks, sent = 0, 0
    for rs, re_ in plan.runs():
        cs = chunks(rs, plan.bytes_of(rs, re_), link.transfer_size, skip_blank=True, erased=mem.erase_value)
        blocks += len(cs)
        sent += sum(len(c) for _, _, c in cs)
    written = sum(min(s + mem.sector_size, end) - s for s in plan.changed)
    # read: the touched span first, each run back after writing, the region for the digest
    secs = link.seconds(mem.name, erases=len(erase), blocks=blocks, read_bytes=(end - start) + written + region.size)
    note = "" if read is not None else "no device given: every touched sector counted as changed"
    return RegionPlan(region.name, mem.name, region.address, region.size, "dfu", len(sectors), len(erase),
                      len(plan.changed), plan.skipped, sent, secs, read is not None, note)


def plan_stream(board: Board, region: Region, via: str, digest: Callable[[Region], tuple[int, str]] | None,
                *, baud: int = 115200) -> RegionPlan:
    """Serial (YMODEM) or OTA: the region goes whole unless the device's digest already matches."""
    mem = board.memory(region.memory)
    firmware = mem.name == board.firmware_memory
    n = -(-region.size // OTA_SLOT_SECTOR) if firmware else len(mem.sectors(region.address, region.size))
    same, note, read = False, "", False
    if digest is None:
        note = "no device digest asked: every sector counted as changed"
    else:
        try:
            crc, sha = digest(region)
            same, read = (sha == region.sha256 and crc == region.crc32), True
        except Exception as e:  # noqa: BLE001 - a stock device, a closed port: the plan says so and goes on
            note = f"device digest unavailable ({e}): every sector counted as changed"
    if same:
        return RegionPlan(region.name, mem.name, region.address, region.size, via, n, 0, 0, n, 0, 0.0, True,
                          "device digest matches: nothing to send")
    if firmware:
        note = (note + "; " if note else "") + "firmware goes via the OTA slot; the Core resets to install it"
    model: SerialLinkModel | OtaLinkModel = SerialLinkModel(baud) if via == "serial" else OtaLinkModel()
    sent = model.wire_bytes(region.size) if isinstance(model, SerialLinkModel) else region.size
    return RegionPlan(region.name, mem.name, region.address, region.size, via, n, n, n, 0, sent,
                      model.seconds(payload=region.size, erases=n), read, note)


def totals(plans: list[RegionPlan]) -> dict[str, Any]:
    return {k: sum(getattr(p, k) for p in plans) for k in ("sectors", "erase", "write", "skip", "bytes_to_send")} | {
        "seconds": round(sum(p.seconds for p in plans), 3)}
