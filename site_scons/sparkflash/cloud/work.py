"""Which deployments this instance runs: the one place that claims work from the fleet store.

Members of running rollouts are claimed with `Store.claim` under a lease
(`rollout_devices.claimed_by` / `lease_until`), each run as an asyncio task
(`deployments.run_member`), their leases renewed while they run; a task whose lease was lost
(another instance took the member over) is cancelled, and its outcome could not be written
anyway (`Store.finish` is fenced by the claim). On start the instance takes back what it
claimed in an earlier life (a restart resumes at once, from the stored progress, instead of
waiting out the leases).

An instance claims the members whose device it holds (`devices.instance`, written as devices
connect), so with several instances behind a load balancer each deploys to its own devices and
a rollout created on any of them reaches all. A device connected nowhere is claimed by any
instance once it has been away for a lease (or was never seen): its deployment waits for it to
connect, or fails after its connect timeout, as with one instance. A device whose instance died
reconnects elsewhere and is claimed there once the dead instance's claim lease has run out; the
deployment resumes from the progress the store holds. Wake-ups are local (a rollout created or
resumed here, a device connecting here) plus a poll every `poll_s`: another instance's new
rollout is seen within that second (no LISTEN/NOTIFY yet).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sparkflash.fleet.records import Claim

if TYPE_CHECKING:
    from sparkflash.cloud.server import CloudServer

__all__ = ["Claimer"]

log = logging.getLogger("sparkflash.cloud")


class Claimer:
    def __init__(self, server: CloudServer, *, lease_s: float = 30.0, limit: int = 64, poll_s: float = 1.0) -> None:
        self.server, self.lease_s, self.limit, self.poll_s = server, lease_s, limit, poll_s
        self.active: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sparkflash-claimer")

    def wake(self) -> None:
        """Something changed here (a rollout created or resumed, a device connected): claim now."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming and cancel the running deployments; their claims stay, for the next start."""
        tasks = [t for t in [self._task, *self.active.values()] if t is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        self.active.clear()

    async def _loop(self) -> None:
        srv = self.server
        n = await srv.db_call(srv.db.reclaim, srv.instance)
        if n:
            log.info("instance %s: resuming %d deployment(s) it held before it stopped", srv.instance, n)
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + self.lease_s / 3
        while True:
            self._wake.clear()
            free = self.limit - len(self.active)
            if free > 0:
                try:
                    claims = await srv.db_call(srv.db.claim, srv.instance, limit=free, lease_s=self.lease_s,
                                               connected_only=True, offline_s=self.lease_s)
                except Exception:  # noqa: BLE001 - a database hiccup: try again on the next round
                    log.exception("instance %s: claiming work failed", srv.instance)
                    claims = []
                for c in claims:
                    self._run(c)
            if loop.time() >= renew_at:
                await self._renew()
                renew_at = loop.time() + self.lease_s / 3
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass

    def _run(self, c: Claim) -> None:
        from sparkflash.cloud.deployments import run_member

        key = (c.rollout_id, c.device_id)
        task = asyncio.create_task(run_member(self.server, c), name=f"deploy-{c.rollout_id}-{c.device_id}")
        self.active[key] = task

        def done(_: asyncio.Task[None]) -> None:
            self.active.pop(key, None)
            self.wake()  # a slot is free, and the outcome may have started the next phase

        task.add_done_callback(done)

    async def _renew(self) -> None:
        srv = self.server
        for (rid, dev), task in list(self.active.items()):
            try:
                held = await srv.db_call(srv.db.renew, srv.instance, rid, dev, lease_s=self.lease_s)
            except Exception:  # noqa: BLE001 - kept running; the next renewal tries again
                log.exception("instance %s: renewing the lease of %s/%s failed", srv.instance, rid, dev)
                continue
            if not held and not task.done():
                log.warning("instance %s: lost the claim on %s/%s; stopping that deployment", srv.instance, rid, dev)
                task.cancel()
