"""The fleet schema as numbered migrations, one list for both databases.

Each migration is a list of statements with three type words filled in per dialect
(`{id}` an auto-increment key, `{big}` a 64-bit integer, `{real}` a double); the store
applies the missing ones in order inside one transaction and records each version in
`schema_version`, so an old database is brought forward on open and a newer one (from a
later sparkflash) is refused rather than misread.
"""

from __future__ import annotations

__all__ = ["LATEST", "MIGRATIONS", "statements"]

_TYPES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "big": "INTEGER", "real": "REAL"},
    "postgresql": {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "big": "BIGINT", "real": "DOUBLE PRECISION"},
}

MIGRATIONS: list[list[str]] = [
    # 1: devices, rollouts and their members, progress, events
    [
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            public_key TEXT NOT NULL,
            generation TEXT,
            capabilities TEXT NOT NULL DEFAULT '[]',
            instance TEXT,
            last_seen {real},
            release_name TEXT,
            release_version TEXT,
            release_sha256 TEXT,
            release_verified_at {real},
            created_at {real} NOT NULL)""",
        """CREATE TABLE device_labels (
            device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            label TEXT NOT NULL,
            PRIMARY KEY (device_id, label))""",
        "CREATE INDEX device_labels_label ON device_labels(label)",
        """CREATE TABLE rollouts (
            id TEXT PRIMARY KEY,
            release_ref TEXT NOT NULL,
            target TEXT NOT NULL,
            phases TEXT NOT NULL,
            state TEXT NOT NULL,
            phase INTEGER NOT NULL,
            forgiven INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL)""",
        """CREATE TABLE rollout_devices (
            rollout_id TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
            device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            phase INTEGER NOT NULL,
            status TEXT NOT NULL,
            detail TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            claimed_by TEXT,
            lease_until {real},
            updated_at {real} NOT NULL,
            PRIMARY KEY (rollout_id, device_id))""",
        "CREATE INDEX rollout_devices_status ON rollout_devices(status, rollout_id)",
        """CREATE TABLE progress (
            rollout_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            region TEXT NOT NULL,
            acked {big} NOT NULL,
            sector {big} NOT NULL,
            total {big} NOT NULL,
            updated_at {real} NOT NULL,
            PRIMARY KEY (rollout_id, device_id, region),
            FOREIGN KEY (rollout_id, device_id) REFERENCES rollout_devices(rollout_id, device_id) ON DELETE CASCADE)""",
        """CREATE TABLE events (
            id {id},
            time {real} NOT NULL,
            kind TEXT NOT NULL,
            rollout_id TEXT,
            device_id TEXT,
            detail TEXT NOT NULL DEFAULT '{{}}')""",
        "CREATE INDEX events_time ON events(time)",
    ],
    # 2: how a rollout deploys (chunk size, fast OTA, connect timeout, regions, the release's name and
    # version for display): what a restarted server needs to resume it exactly as it was asked
    [
        "ALTER TABLE rollouts ADD COLUMN options TEXT NOT NULL DEFAULT '{{}}'",
        "CREATE INDEX events_rollout ON events(rollout_id, id)",
    ],
]
LATEST = len(MIGRATIONS)


def statements(version: int, dialect: str) -> list[str]:
    """Migration `version` (1-based) as SQL for `dialect` ("sqlite" or "postgresql")."""
    return [s.format(**_TYPES[dialect]) for s in MIGRATIONS[version - 1]]
