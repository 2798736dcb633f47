"""Fleet state: devices, rollouts, per-device progress and events in a database (docs/fleet.md).

`open_store(url)` gives the one data layer over SQLite (the default, embedded) or
PostgreSQL (`postgresql://...`); `fleet.rollout` is the pure rollout state machine and
`fleet.rollouts` applies it to a store.
"""

from sparkflash.fleet.store import Store, StoreError, open_store

__all__ = ["Store", "StoreError", "open_store"]
