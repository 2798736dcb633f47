"""A cloud server that is one of several instances: it records in the fleet database which devices
it holds (`fleet.instances`), renews that lease while it lives and releases a dead instance's.

The store is synchronous; the event loop never waits for it: attach/detach only note the change,
and one task writes the noted changes in a worker thread, one transaction per batch (a thousand
devices connecting in a second are a handful of transactions). The heartbeat, every third of the
lease, renews it, brings the rows naming this instance in line with its live sessions, and sweeps
the rows of instances that stopped renewing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from typing import Any

from sparkflash.cloud.server import CloudServer
from sparkflash.cloud.session import DeviceSession
from sparkflash.fleet.instances import DEFAULT_LEASE_S, Presence
from sparkflash.fleet.store import Store

__all__ = ["FleetInstance", "default_instance_name"]

log = logging.getLogger("sparkflash.cloud")


def default_instance_name(port: int) -> str:
    """HOSTNAME:PORT: the same after a restart, so the new process releases its old life's rows."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:50].strip("-._") or "host"
    return f"{host}:{port}"


class FleetInstance(CloudServer):
    def __init__(self, *args: Any, fleet_store: Store, instance: str | None = None,
                 lease_s: float = DEFAULT_LEASE_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fleet_store, self.lease_s = fleet_store, lease_s
        self.instance_name = instance
        self.presence: Presence | None = None
        self._changes: dict[str, str | None] = {}  # device -> generation (connected) / None (left), not yet written
        self._writer: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self._beat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self.instance_name = self.instance_name or default_instance_name(self.port)
        presence = Presence(self.fleet_store, self.instance_name, lease_s=self.lease_s)
        released = await asyncio.to_thread(presence.begin)
        self.presence = presence  # from now on, connection changes are written (those before wait in _changes)
        if released:
            log.info("instance %s: released %d device(s) left from its previous run", self.instance_name, released)
        self._beat = asyncio.create_task(self._heartbeats(), name="fleet-heartbeat")

    async def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        await super().close()
        await self._flush()
        if self.presence is not None:
            await asyncio.to_thread(self.presence.end)

    # -- connections ------------------------------------------------------------------
    def attach(self, s: DeviceSession) -> None:
        super().attach(s)
        assert s.info is not None
        self._note(s.info.device_id, s.info.generation)

    def detach(self, s: DeviceSession) -> None:
        current = s.info is not None and self.sessions.get(s.info.device_id) is s
        super().detach(s)
        if current and s.info is not None:
            self._note(s.info.device_id, None)

    def _note(self, device: str, generation: str | None) -> None:
        self._changes[device] = generation
        if self.presence is not None and (self._writer is None or self._writer.done()):
            self._writer = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        async with self._flushing:  # one batch at a time: a device's "left" never overtakes its "seen"
            while self._changes and self.presence is not None:
                batch, self._changes = self._changes, {}
                try:
                    await asyncio.to_thread(self.presence.apply, batch)
                except Exception as e:  # the database is away: keep the changes for the next heartbeat
                    log.warning("instance %s: could not record %d connection change(s): %s", self.instance_name,
                                len(batch), e)
                    self._changes = batch | self._changes
                    return

    async def _heartbeats(self) -> None:
        assert self.presence is not None
        while True:
            try:
                await self._flush()
                async with self._flushing:  # no batch in flight; the live sessions are the truth
                    await asyncio.to_thread(self.presence.heartbeat, set(self.sessions))
                await asyncio.to_thread(self.presence.sweep)
            except Exception as e:
                log.warning("instance %s: heartbeat failed: %s", self.instance_name, e)
            await asyncio.sleep(self.lease_s / 3)

    def device_list(self) -> dict[str, Any]:
        out = super().device_list()
        out["instance"] = self.instance_name
        return out
