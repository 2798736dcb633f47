"""Deployments and rollouts on the server: created in the fleet store, run as asyncio tasks.

A deployment (POST /v1/deployments) is a rollout of one phase over its devices with no
failure threshold; a rollout (POST /v1/rollouts) has phases and thresholds. Either way the
store holds it, `cloud.work.Claimer` hands this instance its members, and `run_member`
deploys to one device: refusals before any byte, each region written (resuming from the
last acknowledged sector the store holds) and verified by what the device has, the outcome
reported to the rollout machine. Progress events stream live from memory (bounded); the
milestones (deploy-start, region-done, deploy-done) are also stored as events.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparkflash import names
from sparkflash.boards import Board, load_board
from sparkflash.cloud.flasher import (
    SECTOR,
    OtaOptions,
    agent_release_record,
    device_info,
    refusal,
    region_digest,
    write_region,
)
from sparkflash.deploy.base import DeployResult, RegionResult, Unverifiable
from sparkflash.deploy.run import refuse_record_downgrade, select_regions
from sparkflash.errors import InputError, SparkflashError, VerifyError
from sparkflash.fleet import ids
from sparkflash.fleet.records import Claim, Phase, Target
from sparkflash.fleet.rollout import select
from sparkflash.fleet.rollouts import Rollouts
from sparkflash.manifest.model import Region, parse_version
from sparkflash.manifest.release import Release
from sparkflash.protocols import ota

if TYPE_CHECKING:
    from sparkflash.cloud.server import CloudServer

__all__ = ["LiveEvents", "create", "live", "options_from", "refuse_downgrade", "run_member", "status"]

log = logging.getLogger("sparkflash.cloud")
LIVE_MAX = 100_000  # events kept in memory per deployment for the stream (progress dropped beyond)
LIVE_DEPLOYMENTS = 32  # deployments whose live events are kept (the oldest go first; the store keeps milestones)
STORED_EVENTS = ("deploy-start", "region-done", "deploy-done")


@dataclass
class LiveEvents:
    """One deployment's events on this instance, for GET .../events (a restarted server has only new ones)."""

    id: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, ev: dict[str, Any]) -> None:
        if len(self.events) < LIVE_MAX or ev.get("event") != "progress":
            self.events.append(ev)

    def after(self, n: int) -> list[dict[str, Any]]:
        return self.events[n:]


def live(server: CloudServer, rid: str) -> LiveEvents:
    """The deployment's live events, kept for the newest LIVE_DEPLOYMENTS deployments only."""
    got = server.deployments.get(rid)
    if got is None:
        got = server.deployments[rid] = LiveEvents(rid)
        for old in list(server.deployments)[:-LIVE_DEPLOYMENTS]:
            server.deployments.pop(old, None)
    return got


def options_from(body: dict[str, Any]) -> dict[str, Any]:
    """The deploy options a request may set, checked and bounded (they are stored with the rollout)."""
    try:
        chunk = int(body.get("chunk_size", ota.MAX_CHUNK))
        connect = float(body.get("connect_timeout", 60.0))
    except (TypeError, ValueError) as e:
        raise InputError(f"bad option: {e}") from None
    if chunk not in (128, 256, 512):
        raise InputError(f"chunk_size {chunk}: 128, 256 or 512")
    if not 0.1 <= connect <= 600.0:
        raise InputError(f"connect_timeout {connect:g}: 0.1-600 s")
    regions = body.get("regions")
    if regions is not None and not (isinstance(regions, list) and len(regions) <= 64
                                    and all(isinstance(r, str) for r in regions)):
        raise InputError("'regions' must be a list of region names")
    return {"chunk_size": chunk, "fast": bool(body.get("fast", True)), "connect_timeout": connect,
            "regions": [ids.region_name(r) for r in regions] if regions else None,
            "allow_downgrade": bool(body.get("allow_downgrade", False))}


def _ota(opts: dict[str, Any]) -> OtaOptions:
    return OtaOptions(chunk_size=int(opts["chunk_size"]), allow_fast=bool(opts["fast"]),
                      connect_s=float(opts["connect_timeout"]))


def refuse_downgrade(server: CloudServer, device: str, name: str, version: str) -> None:
    """The device's release record (what its verified deploy left in the store) when it has one for this
    release, else the server's own ledger of what it deployed."""
    dev = server.db.device(device)
    if dev is not None and dev.release is not None and dev.release[0] == name:
        if parse_version(version) < parse_version(dev.release[1]):
            raise InputError(f"release {name} {version} is older than {dev.release[1]}, which device {device}'s "
                             "release record holds (verified); pass allow_downgrade to deploy it anyway")
        return
    server.ledger.refuse_downgrade(device, name, version)


def create(server: CloudServer, release: Release, ref: str, devices: list[str], target: Target | None,
           phases: tuple[Phase, ...], opts: dict[str, Any], rollout_id: str | None = None) -> str:
    """Store a deployment or rollout (blocking: a worker thread). Devices that are not registered get
    their failure at once (there is no row to claim for them)."""
    m = release.manifest
    select_regions(m.regions, opts.get("regions"))  # a bad region name is refused now, not per device
    for r in m.regions:
        if not server.store.path(r.sha256).is_file():
            raise InputError(f"region {r.name!r}: blob {r.sha256[:16]}… is not in the server's store "
                             f"(PUT /v1/blobs/{r.sha256} first)")
    rid = ids.rollout_id(rollout_id) if rollout_id else f"d-{secrets.token_hex(6)}"
    known, missing = [], {}
    for d in devices:
        if server.db.device(d) is None and not server.import_device(d):
            missing[d] = f"device {d} is not registered (its handshake is refused), so it did not connect"
        else:
            known.append(d)
    full = {**opts, "name": m.name, "version": m.version, "manifest_sha256": hashlib.sha256(release.raw).hexdigest(),
            "unregistered": missing}
    ro = Rollouts(server.db)
    with server.db.transaction():
        if target is None:  # a deployment: exactly these devices, one phase (none: it is done at once)
            chosen = known
        else:
            chosen = select(rid, server.db.devices(), target)
            if not chosen:
                raise InputError(f"rollout {rid}: the target matches no registered device")
        if not opts.get("allow_downgrade"):
            for d in chosen:
                refuse_downgrade(server, d, m.name, m.version)
        if target is None:
            server.db.create_rollout(rid, ref, Target(devices=tuple(known)), phases, [(d, 0) for d in known],
                                     options=full)
            ro.evaluate(rid)
        else:
            ro.create(rid, ref, target, phases, options=full)
    live(server, rid)
    return rid


def status(server: CloudServer, rid: str) -> dict[str, Any] | None:
    """The deployment view of a rollout: per-device results in the order of its devices."""
    r = server.db.rollout(rid)
    if r is None:
        return None
    o = r.options
    members = server.db.members(rid)
    results = [m.detail for m in members if m.status in ("succeeded", "failed") and m.detail]
    for d, why in sorted((o.get("unregistered") or {}).items()):
        results.append({**DeployResult(o.get("name", "?"), o.get("version", "?"), d, "ota", []).to_json(),
                        "ok": False, "error": why, "exit_code": 4})
    done = r.state in ("done", "aborted")
    return {"id": rid, "release": o.get("name"), "version": o.get("version"), "state": r.state, "reason": r.reason,
            "devices": [m.device_id for m in members] + sorted(o.get("unregistered") or {}),
            "regions": o.get("regions"), "done": done,
            "ok": done and bool(results) and all(x.get("ok") for x in results), "results": results}


class _Run:
    """One device's deployment: events, saved progress and the async deploy loop."""

    def __init__(self, server: CloudServer, claim: Claim, release: Release, opts: dict[str, Any]) -> None:
        self.server, self.claim, self.release, self.opts = server, claim, release, opts
        self.device, self.rid = claim.device_id, claim.rollout_id
        self.live = live(server, self.rid)
        self.board: Board = load_board(release.manifest.board)
        self.ota = _ota(opts)

    def emit(self, ev: dict[str, Any]) -> None:
        ev = {**ev, "device": self.device, "deployment": self.rid}
        self.live.add(ev)
        if ev["event"] in STORED_EVENTS:
            detail = {k: v for k, v in ev.items() if k not in ("device", "deployment", "event")}
            self.server.db_later(self.server.db.add_event, ev["event"], rollout_id=self.rid, device_id=self.device,
                                 detail=detail)

    def _saver(self, region: Region) -> Callable[[int, int], None]:
        """Progress: streamed, and stored whenever another whole sector is acknowledged."""
        saved = [self.claim.progress.get(region.name, (0, 0, 0))[1]]

        def progress(done: int, total: int) -> None:
            self.emit({"event": "progress", "region": region.name, "done": done, "total": total})
            sector = done // SECTOR * SECTOR
            if sector > saved[0] or done == total:
                saved[0] = sector
                self.server.db_later(self.server.db.save_progress, self.rid, self.device, region.name,
                                     acked=done, sector=sector, total=total)
        return progress

    def _resume_at(self, region: Region, agent: bool) -> int:
        """Where this region's write starts: the last acknowledged sector of an earlier attempt (with the
        agent, its sector digests decide instead: they are the device's own word)."""
        acked, sector, total = self.claim.progress.get(region.name, (0, 0, 0))
        if agent or total != region.size or sector <= 0:
            return 0
        return min(sector, (region.size - 1) // SECTOR * SECTOR)

    async def deploy(self) -> DeployResult:
        m = self.release.manifest
        regions = select_regions(m.regions, self.opts.get("regions"))
        info = await device_info(self.server, self.device, self.ota)
        refused = {r.name: why for r in regions if (why := refusal(self.board, r, info)) is not None}
        result = DeployResult(m.name, m.version, self.device, "ota", [])
        self.emit({"event": "deploy-start", "release": m.name, "version": m.version, "via": "ota",
                   "regions": len(regions), "attempt": self.claim.attempt, "instance": self.server.instance,
                   "resume": {r.name: self._resume_at(r, info.agent) for r in regions}})
        if refused:  # nothing sent: each refused region fails with its reason (exit 2), the others are skipped
            for r in regions:
                rr = RegionResult(r.name, r.address, r.size, "failed" if r.name in refused else "skipped",
                                  error=refused.get(r.name), exit_code=2 if r.name in refused else 0)
                result.regions.append(rr)
                self.emit({"event": "region-done", **rr.to_json()})
            self.emit({"event": "deploy-done", "ok": False})
            return result
        if info.agent and not self.opts.get("allow_downgrade"):  # the device's own record outranks the store's
            refuse_record_downgrade(await agent_release_record(self.server, self.device, self.ota), self.device,
                                    m.name, m.version)
        blobs = await asyncio.to_thread(lambda: {r.name: self.release.blob(r) for r in regions})
        failed = False
        loop = asyncio.get_running_loop()
        for r in regions:
            rr = RegionResult(r.name, r.address, r.size, "skipped")
            result.regions.append(rr)
            if failed:
                continue
            self.emit({"event": "region-start", "region": r.name, "memory": r.memory, "address": r.address,
                       "size": r.size})
            t0 = loop.time()
            try:
                rr.report = await write_region(self.server, self.board, self.device, r, blobs[r.name], self._saver(r),
                                               self.ota, resume=self._resume_at(r, info.agent))
                try:
                    crc, sha = await region_digest(self.server, self.board, self.device, r, self.ota)
                except Unverifiable as u:  # the device has no digest for it: say what the write proved
                    rr.status, rr.proves = u.status, u.proves
                else:
                    if sha != r.sha256 or crc != r.crc32:
                        raise VerifyError(f"region {r.name!r} at 0x{r.address:08x}: device holds sha256 {sha[:16]}… "
                                          f"crc32 {crc:08x}, expected {r.sha256[:16]}… {r.crc32:08x}")
                    rr.status = "unchanged" if rr.report.bytes_sent == 0 and rr.report.sectors_skipped else "verified"
            except SparkflashError as e:
                rr.status, rr.error, rr.exit_code, failed = "failed", str(e), e.exit_code, True
            rr.seconds = loop.time() - t0
            self.emit({"event": "region-done", **rr.to_json()})
        if not failed and info.agent and self.release.signature is not None:  # the agent's REC SET, read back
            sha = hashlib.sha256(self.release.raw).hexdigest()
            await agent_release_record(self.server, self.device, self.ota, (m.name, m.version, sha))
        self.emit({"event": "deploy-done", "ok": result.ok})
        return result

    def record(self, result: DeployResult) -> None:
        """After success: the server's ledger; with every region verified by the device's digest of a signed
        release, the device's verified release in the store (blocking)."""
        m = self.release.manifest
        self.server.ledger.record(self.device, m.name, m.version)
        if self.release.signature is not None and all(r.status in ("verified", "unchanged") for r in result.regions):
            if names.valid("release name", m.name) and names.valid("version", m.version):
                self.server.db.set_verified_release(self.device, m.name, m.version,
                                                    hashlib.sha256(self.release.raw).hexdigest())


async def run_member(server: CloudServer, claim: Claim) -> None:
    """Deploy one claimed member and report its outcome (never raises but for cancellation: a result must
    exist for every device, or the rollout never ends)."""
    doc: dict[str, Any]
    try:
        r = await server.db_call(server.db.rollout, claim.rollout_id)
        if r is None:
            return
        release = await asyncio.to_thread(server.releases.open, claim.release_ref)
        pinned = r.options.get("manifest_sha256")
        if pinned and hashlib.sha256(release.raw).hexdigest() != pinned:  # e.g. replaced in the bucket since creation
            raise VerifyError(f"release {claim.release_ref}: the manifest differs from the one rollout "
                              f"{claim.rollout_id} was created with (sha256 {pinned[:16]}…); nothing was sent")
        run = _Run(server, claim, release, r.options)
        try:
            res = await run.deploy()
        except SparkflashError as e:
            m = release.manifest
            run.emit({"event": "deploy-done", "ok": False, "error": str(e)})
            doc = {**DeployResult(m.name, m.version, claim.device_id, "ota", []).to_json(), "ok": False,
                   "error": str(e), "exit_code": e.exit_code}
        else:
            doc = res.to_json()
            if res.ok:
                await asyncio.to_thread(run.record, res)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - reported as the device's failure
        if not isinstance(e, SparkflashError):
            log.exception("rollout %s, device %s", claim.rollout_id, claim.device_id)
        doc = {"release": "?", "version": "?", "device": claim.device_id, "via": "ota", "regions": [], "ok": False,
               "error": str(e), "exit_code": getattr(e, "exit_code", 1)}
    ok = bool(doc.get("ok"))
    if not await server.db_call(Rollouts(server.db).report, server.instance, claim.rollout_id, claim.device_id,
                                ok=ok, detail=doc):
        log.warning("rollout %s, device %s: the claim was lost before the outcome was written",
                    claim.rollout_id, claim.device_id)
