"""The deploy loop: every region of a verified release through one flasher, each verified.

Shared by DFU, serial and OTA. A region is reported "verified" only after the device's
own digest of the written range equals the signed manifest's; the host-side ledger of
deployed versions is written only after every region verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from sparkflash import names
from sparkflash.deploy.base import (
    DEFAULT_ACCEPTED,
    DeployResult,
    EventFn,
    Flasher,
    RegionResult,
    Unverifiable,
)
from sparkflash.errors import InputError, SparkflashError, VerifyError
from sparkflash.manifest.model import Region, parse_version
from sparkflash.manifest.release import Release, atomic_write

__all__ = ["Ledger", "deploy_release", "refuse_device_downgrade", "select_regions"]


def _noop(_: dict[str, Any]) -> None:
    pass


class Ledger:
    """Last version of each release deployed to each device (host side, for downgrade checks)."""

    def __init__(self, root: Path | None = None) -> None:
        default = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "sparkflash"
        self.root = root or Path(os.environ.get("SPARKFLASH_HOME", default))

    def _path(self, device: str) -> Path:
        """A Core id (24 hex) names its file; any other id (a USB serial string, a pipe name) is
        never used as a path: its file is named by a digest of it."""
        if names.valid("device id", device):
            return self.root / "devices" / f"{device}.json"
        return self.root / "devices" / f"other-{hashlib.sha256(device.encode('utf-8', 'replace')).hexdigest()[:24]}.json"

    def _load(self, device: str) -> dict[str, str]:
        """The device's record; a corrupt or hand-edited file is one clear error, not a traceback."""
        p = self._path(device)
        try:
            d = json.loads(p.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: unreadable deploy ledger ({e}); fix or delete it") from None
        if not isinstance(d, dict) or not all(names.valid("release name", k) and names.valid("version", v)
                                              for k, v in d.items()):
            raise InputError(f"{p}: malformed deploy ledger (expected release name -> version); fix or delete it")
        return d

    def last(self, device: str, release: str) -> str | None:
        return self._load(device).get(release)

    def refuse_downgrade(self, device: str, name: str, version: str) -> None:
        """InputError if `version` is older than the last `name` deployed to `device`."""
        last = self.last(device, name)
        if last is not None and parse_version(version) < parse_version(last):
            raise InputError(
                f"release {name} {version} is older than {last}, last deployed to device {device}; "
                "pass --allow-downgrade to deploy it anyway"
            )

    def record(self, device: str, release: str, version: str) -> None:
        d = self._load(device)
        d[names.release_name(release)] = names.version(version)
        atomic_write(self._path(device), (json.dumps(d, indent=2, sort_keys=True) + "\n").encode())


def refuse_device_downgrade(flasher: Flasher, device: str, name: str, version: str) -> None:
    """The device's own release record (`REC`, where the flasher can read one: the device agent)
    outranks any host's ledger: another host or SPARKFLASH_HOME cannot downgrade past it."""
    read = getattr(flasher, "release_record", None)
    if callable(read):
        refuse_record_downgrade(read(), device, name, version)


def refuse_record_downgrade(rec: tuple[str, str, str] | None, device: str, name: str, version: str) -> None:
    """`rec`: (name, version, sha256) the device records as installed, or None when it holds none."""
    if rec is None:
        return
    rname, rversion = names.release_name(rec[0], "device release record"), names.version(rec[1], "device release record")
    if rname == name and parse_version(version) < parse_version(rversion):
        raise InputError(f"release {name} {version} is older than {rversion}, which device {device} records as "
                         "installed; pass --allow-downgrade to deploy it anyway")


def select_regions(regions: tuple[Region, ...], only: list[str] | None = None, memory: str | None = None) -> list[Region]:
    out = [r for r in regions if memory is None or r.memory == memory]
    if only:
        names = {r.name for r in regions}
        for n in only:
            if n not in names:
                raise InputError(f"no region named {n!r} in the release (regions: {', '.join(sorted(names))})")
        out = [r for r in out if r.name in only]
    return out


def deploy_release(
    flasher: Flasher,
    release: Release,
    *,
    regions: list[Region] | None = None,
    on_event: EventFn = _noop,
    ledger: Ledger | None = None,
    allow_downgrade: bool = False,
    accepted: frozenset[str] = DEFAULT_ACCEPTED,
) -> DeployResult:
    """Write and verify each region; stop at the first failure (later regions: "skipped")."""
    m = release.manifest
    todo = list(m.regions) if regions is None else regions
    device = flasher.device_id()
    if not allow_downgrade:
        if ledger is not None:
            ledger.refuse_downgrade(device, m.name, m.version)
        refuse_device_downgrade(flasher, device, m.name, m.version)
    blobs = {r.name: release.blob(r) for r in todo}  # every digest checked before any write
    result = DeployResult(m.name, m.version, device, flasher.via, [], accepted)
    on_event({"event": "deploy-start", "release": m.name, "version": m.version, "device": device,
              "via": flasher.via, "regions": len(todo)})
    failed = False
    for r in todo:
        rr = RegionResult(r.name, r.address, r.size, "skipped")
        result.regions.append(rr)
        if failed:
            continue
        on_event({"event": "region-start", "region": r.name, "memory": r.memory, "address": r.address, "size": r.size})
        t0 = time.monotonic()

        def progress(done: int, total: int, _name: str = r.name) -> None:
            on_event({"event": "progress", "region": _name, "done": done, "total": total})

        try:
            rr.report = flasher.write_region(r, blobs[r.name], progress)
            try:
                crc, sha = flasher.device_digest(r)
            except Unverifiable as u:  # the device has no digest for it: say what the write proved
                rr.status, rr.proves = u.status, u.proves
                if u.status not in accepted:
                    rr.exit_code, failed = 3, True
            else:
                if sha != r.sha256 or crc != r.crc32:
                    raise VerifyError(
                        f"region {r.name!r} at 0x{r.address:08x}: device holds sha256 {sha[:16]}… crc32 {crc:08x}, "
                        f"expected {r.sha256[:16]}… {r.crc32:08x}"
                    )
                rr.status = "unchanged" if rr.report.bytes_sent == 0 and rr.report.sectors_skipped else "verified"
        except SparkflashError as e:
            rr.status, rr.error, rr.exit_code, failed = "failed", str(e), e.exit_code, True
        rr.seconds = time.monotonic() - t0
        on_event({"event": "region-done", **rr.to_json()})
    if not failed:
        flasher.finish()
        if ledger is not None and result.ok and release.signature is not None:  # an unsigned ad-hoc flash names nothing
            ledger.record(device, m.name, m.version)
        write_record = getattr(flasher, "set_release_record", None)
        if release.signature is not None and callable(write_record):  # the device agent's `REC SET`
            write_record(m.name, m.version, hashlib.sha256(release.raw).hexdigest())
    on_event({"event": "deploy-done", "ok": result.ok, "device": device})
    return result
