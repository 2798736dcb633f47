"""The fleet data layer: one small interface over SQLite (default) or PostgreSQL.

Every method validates its ids (fleet.ids) before a query, takes `now` from its caller
when time matters (leases, pruning) so tests need no sleeping, and keeps the SQL the same
for both databases; `backend.py` holds what differs. Work is handed out by `claim`: rows
of running rollouts whose device this instance holds, under a lease that the instance
renews and that another instance may take over once it has expired.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from sparkflash.errors import InputError
from sparkflash.fleet import ids
from sparkflash.fleet.backend import Backend, StoreError
from sparkflash.fleet.records import (
    MEMBER_STATES,
    ROLLOUT_STATES,
    Claim,
    Device,
    Event,
    Member,
    Phase,
    Rollout,
    Target,
)
from sparkflash.fleet.schema import LATEST, statements

__all__ = ["EVENT_MAX_AGE_S", "EVENT_MAX_COUNT", "Store", "StoreError", "open_store"]

EVENT_MAX_AGE_S = 7 * 24 * 3600.0
EVENT_MAX_COUNT = 100_000
PRUNE_EVERY = 256  # events added between two automatic prunes
_DEVICE_COLS = ("d.id, d.public_key, d.generation, d.capabilities, d.instance, d.last_seen, d.release_name, "
                "d.release_version, d.release_sha256, d.release_verified_at")
_ROLLOUT_COLS = "id, release_ref, target, phases, state, phase, forgiven, reason, created_at, updated_at, options"
_MEMBER_COLS = "rollout_id, device_id, phase, status, detail, attempts, claimed_by, lease_until"


def open_store(url: str | Path, *, event_max_age_s: float = EVENT_MAX_AGE_S,
               event_max_count: int = EVENT_MAX_COUNT) -> Store:
    """`postgresql://...` (or `postgres://`), `sqlite:///abs/path`, `sqlite:rel/path`, or a file path."""
    s = str(url)
    backend: Backend
    if s.startswith(("postgresql://", "postgres://")):
        from sparkflash.fleet.postgres_backend import PostgresBackend

        backend = PostgresBackend(s)
    else:
        if s.startswith("sqlite:"):
            s = s[len("sqlite://"):] if s.startswith("sqlite://") else s[len("sqlite:"):]
        elif "://" in s:
            raise InputError(f"database {s!r}: expected postgresql://... or sqlite:PATH or a file path")
        if not s or s == ":memory:":
            raise InputError("database: SQLite needs a file path (WAL mode; several processes may share it)")
        from sparkflash.fleet.sqlite_backend import SqliteBackend

        backend = SqliteBackend(Path(s))
    return Store(backend, event_max_age_s=event_max_age_s, event_max_count=event_max_count)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _frac(value: float, what: str) -> float:
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise InputError(f"{what} {value!r} must be between 0 and 1")
    return v


def _percent(value: float, what: str) -> float:
    v = float(value)
    if not 0.0 < v <= 100.0:
        raise InputError(f"{what} {value!r} must be a percentage in (0, 100]")
    return v


def check_phases(phases: Sequence[Phase]) -> tuple[Phase, ...]:
    """Phases grow strictly and end at 100 % of the target: nothing targeted is left out."""
    if not phases or len(phases) > 20:
        raise InputError(f"a rollout needs 1-20 phases (got {len(phases)})")
    out, last = [], 0.0
    for i, p in enumerate(phases, 1):
        pct = _percent(p.percent, f"phase {i} percent")
        if pct <= last:
            raise InputError(f"phase {i}: {pct:g} % does not grow past phase {i - 1}'s {last:g} %")
        out.append(Phase(pct, _frac(p.threshold, f"phase {i} threshold")))
        last = pct
    if last != 100.0:
        raise InputError(f"the last phase reaches {last:g} % of the target; it must reach 100 %")
    return tuple(out)


class Store:
    def __init__(self, backend: Backend, *, event_max_age_s: float = EVENT_MAX_AGE_S,
                 event_max_count: int = EVENT_MAX_COUNT) -> None:
        self.db = backend
        self.event_max_age_s, self.event_max_count = event_max_age_s, event_max_count
        self._added = 0
        try:
            self.migrate()
        except BaseException:
            backend.close()
            raise

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one atomic write (calls inside join it)."""
        with self.db.transaction():
            yield

    # -- schema ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        rows = self.db.execute("SELECT MAX(version) FROM schema_version")
        return int(rows[0][0] or 0)

    def migrate(self) -> int:
        """Bring the schema to LATEST; refuse a database made by a newer sparkflash."""
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at "
                        + ("REAL" if self.dialect == "sqlite" else "DOUBLE PRECISION") + " NOT NULL)")
        with self.db.transaction():
            self.db.migration_lock()
            have = self.schema_version()
            if have > LATEST:
                raise StoreError(f"the fleet database has schema version {have}, newer than this sparkflash "
                                 f"understands ({LATEST}): upgrade sparkflash")
            for v in range(have + 1, LATEST + 1):
                for sql in statements(v, self.dialect):
                    self.db.execute(sql)
                self.db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (v, time.time()))
        return LATEST

    # -- devices --------------------------------------------------------------------------
    def put_device(self, device_id: str, public_key: str, *, labels: Iterable[str] = (),
                   capabilities: Iterable[str] = (), generation: str | None = None,
                   now: float | None = None) -> Device:
        """Register (or re-key) a device; its labels are replaced by `labels`."""
        d = ids.device_id(device_id)
        if not public_key.startswith("-----BEGIN PUBLIC KEY-----") or len(public_key) > 4096:
            raise InputError(f"device {d}: public key must be a PEM SubjectPublicKeyInfo of at most 4 KiB")
        labs = sorted({ids.label(x) for x in labels})
        caps = sorted({ids.label(x) for x in capabilities})
        if generation not in (None, "ccl", "os"):
            raise InputError(f"device {d}: generation {generation!r} must be 'ccl' or 'os'")
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO devices (id, public_key, generation, capabilities, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET public_key = excluded.public_key, "
                "generation = COALESCE(excluded.generation, devices.generation), capabilities = excluded.capabilities",
                (d, public_key, generation, _json(caps), time.time() if now is None else now))
            self.db.execute("DELETE FROM device_labels WHERE device_id = ?", (d,))
            for lab in labs:
                self.db.execute("INSERT INTO device_labels (device_id, label) VALUES (?, ?)", (d, lab))
        dev = self.device(d)
        assert dev is not None
        return dev

    def _devices(self, where: str, params: Sequence[Any]) -> list[Device]:
        rows = self.db.execute(f"SELECT {_DEVICE_COLS} FROM devices d {where} ORDER BY d.id", params)
        labels: dict[str, list[str]] = {}
        for dev, lab in self.db.execute("SELECT device_id, label FROM device_labels ORDER BY device_id, label"):
            labels.setdefault(dev, []).append(lab)
        out = []
        for r in rows:
            rel = (r[6], r[7], r[8]) if r[6] is not None else None
            out.append(Device(r[0], r[1], r[2], tuple(json.loads(r[3])), tuple(labels.get(r[0], ())), r[4], r[5],
                              rel, r[9]))
        return out

    def device(self, device_id: str) -> Device | None:
        found = self._devices("WHERE d.id = ?", (ids.device_id(device_id),))
        return found[0] if found else None

    def devices(self, *, label: str | None = None) -> list[Device]:
        if label is None:
            return self._devices("", ())
        return self._devices("WHERE d.id IN (SELECT device_id FROM device_labels WHERE label = ?)", (ids.label(label),))

    def device_seen(self, device_id: str, instance: str | None, *, generation: str | None = None,
                    now: float | None = None) -> bool:
        """A device connected to (or, with instance None, left) `instance`; False if it is not registered."""
        d = ids.device_id(device_id)
        inst = None if instance is None else ids.instance_id(instance)
        if generation not in (None, "ccl", "os"):
            raise InputError(f"device {d}: generation {generation!r} must be 'ccl' or 'os'")
        rows = self.db.execute("UPDATE devices SET instance = ?, last_seen = ?, generation = COALESCE(?, generation) "
                               "WHERE id = ? RETURNING id", (inst, time.time() if now is None else now, generation, d))
        return bool(rows)

    def device_left(self, device_id: str, instance: str, *, now: float | None = None) -> None:
        """The connection on `instance` ended (a newer one on another instance is left alone)."""
        self.db.execute("UPDATE devices SET instance = NULL, last_seen = ? WHERE id = ? AND instance = ?",
                        (time.time() if now is None else now, ids.device_id(device_id), ids.instance_id(instance)))

    def instance_gone(self, instance: str) -> int:
        """An instance died: its devices are no longer connected anywhere. How many were."""
        return len(self.db.execute("UPDATE devices SET instance = NULL WHERE instance = ? RETURNING id",
                                   (ids.instance_id(instance),)))

    def set_verified_release(self, device_id: str, name: str, version: str, sha256: str, *,
                             now: float | None = None) -> None:
        """The release record the device itself reported, after its digest matched (never a guess)."""
        if not (0 < len(name) <= 64 and name.replace("-", "").replace("_", "").replace(".", "").isalnum()):
            raise InputError(f"release name {name!r}: 1-64 of letters, digits, - _ .")
        if not (0 < len(version) <= 64 and all(c.isalnum() or c in "+-._" for c in version)):
            raise InputError(f"release version {version!r}: 1-64 of letters, digits, + - . _")
        rows = self.db.execute("UPDATE devices SET release_name = ?, release_version = ?, release_sha256 = ?, "
                               "release_verified_at = ? WHERE id = ? RETURNING id",
                               (name, version, ids.sha256_hex(sha256), time.time() if now is None else now,
                                ids.device_id(device_id)))
        if not rows:
            raise InputError(f"device {device_id} is not registered")

    # -- rollouts -------------------------------------------------------------------------
    def create_rollout(self, rollout_id: str, release_ref: str, target: Target, phases: Sequence[Phase],
                       members: Sequence[tuple[str, int]], *, options: dict[str, Any] | None = None,
                       now: float | None = None) -> Rollout:
        """Store a rollout and its members (device, phase); phase 0's members are pending at once."""
        rid, ref = ids.rollout_id(rollout_id), ids.release_ref(release_ref)
        ph = check_phases(phases)
        t = Target(tuple(ids.device_id(x) for x in target.devices), tuple(ids.label(x) for x in target.labels),
                   _percent(target.percent, "target percent"))
        when = time.time() if now is None else now
        with self.db.transaction():
            if self.db.execute("SELECT 1 FROM rollouts WHERE id = ?", (rid,)):
                raise InputError(f"rollout {rid} exists already")
            opts = _json(options or {})
            if len(opts) > 64 * 1024:
                raise InputError(f"rollout {rid}: options of {len(opts)} bytes (at most 64 KiB)")
            self.db.execute(f"INSERT INTO rollouts ({_ROLLOUT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (rid, ref, _json(t.as_json()), _json([p.as_json() for p in ph]), "running", 0, 0, None,
                             when, when, opts))
            for dev, phase in members:
                if not 0 <= phase < len(ph):
                    raise InputError(f"rollout {rid}: device {dev} in phase {phase} of {len(ph)}")
                self.db.execute("INSERT INTO rollout_devices (rollout_id, device_id, phase, status, updated_at) "
                                "VALUES (?, ?, ?, ?, ?)",
                                (rid, ids.device_id(dev), phase, "pending" if phase == 0 else "waiting", when))
            self.add_event("rollout-created", rollout_id=rid, detail={"release": ref, "devices": len(members)}, now=when)
            self.db.notify(f"rollout {rid}")
        r = self.rollout(rid)
        assert r is not None
        return r

    @staticmethod
    def _rollout(r: tuple[Any, ...]) -> Rollout:
        t = json.loads(r[2])
        return Rollout(r[0], r[1], Target(tuple(t["devices"]), tuple(t["labels"]), float(t["percent"])),
                       tuple(Phase(float(p["percent"]), float(p["threshold"])) for p in json.loads(r[3])),
                       r[4], int(r[5]), int(r[6]), r[7], float(r[8]), float(r[9]), json.loads(r[10] or "{}"))

    def rollout(self, rollout_id: str, *, lock: bool = False) -> Rollout | None:
        """One rollout; `lock` (inside a transaction) holds its row until the transaction ends."""
        rows = self.db.execute(f"SELECT {_ROLLOUT_COLS} FROM rollouts WHERE id = ?" + (self.db.lock_row if lock else ""),
                               (ids.rollout_id(rollout_id),))
        return self._rollout(rows[0]) if rows else None

    def rollouts(self) -> list[Rollout]:
        return [self._rollout(r) for r in self.db.execute(f"SELECT {_ROLLOUT_COLS} FROM rollouts ORDER BY created_at, id")]

    def set_rollout(self, rollout_id: str, *, state: str, phase: int, forgiven: int, reason: str | None,
                    now: float | None = None) -> None:
        if state not in ROLLOUT_STATES:
            raise InputError(f"rollout state {state!r} must be one of {', '.join(ROLLOUT_STATES)}")
        self.db.execute("UPDATE rollouts SET state = ?, phase = ?, forgiven = ?, reason = ?, updated_at = ? WHERE id = ?",
                        (state, phase, forgiven, reason, time.time() if now is None else now, ids.rollout_id(rollout_id)))
        self.db.notify(f"rollout {rollout_id}")

    def members(self, rollout_id: str) -> list[Member]:
        rows = self.db.execute(f"SELECT {_MEMBER_COLS} FROM rollout_devices WHERE rollout_id = ? ORDER BY phase, device_id",
                               (ids.rollout_id(rollout_id),))
        return [Member(r[0], r[1], int(r[2]), r[3], json.loads(r[4] or "{}"), int(r[5]), r[6], r[7]) for r in rows]

    def member_counts(self, rollout_id: str) -> dict[int, dict[str, int]]:
        """phase -> status -> number of devices."""
        out: dict[int, dict[str, int]] = {}
        for phase, status, n in self.db.execute("SELECT phase, status, COUNT(*) FROM rollout_devices WHERE rollout_id = ? "
                                                "GROUP BY phase, status", (ids.rollout_id(rollout_id),)):
            out.setdefault(int(phase), {})[status] = int(n)
        return out

    def set_members(self, rollout_id: str, *, phase: int, from_status: str, to_status: str,
                    now: float | None = None) -> int:
        """Move every member of `phase` in `from_status` to `to_status` (activate, retry, skip)."""
        if from_status not in MEMBER_STATES or to_status not in MEMBER_STATES:
            raise InputError(f"member status must be one of {', '.join(MEMBER_STATES)}")
        rows = self.db.execute("UPDATE rollout_devices SET status = ?, claimed_by = NULL, lease_until = NULL, updated_at = ? "
                               "WHERE rollout_id = ? AND phase = ? AND status = ? RETURNING device_id",
                               (to_status, time.time() if now is None else now, ids.rollout_id(rollout_id), phase, from_status))
        if rows and to_status == "pending":
            self.db.notify(f"rollout {rollout_id}")
        return len(rows)

    # -- work -----------------------------------------------------------------------------
    def claim(self, instance: str, *, limit: int = 16, lease_s: float = 30.0, now: float | None = None,
              connected_only: bool = True, offline_s: float | None = None) -> list[Claim]:
        """Hand `instance` up to `limit` devices to deploy to: pending members of running rollouts, and
        claimed ones whose lease expired (their instance died). `connected_only`: only devices whose
        connection this instance holds, and with `offline_s` also those connected nowhere that were
        never seen or not for `offline_s` (any instance may take them; their deployment then waits
        for the device, or fails after its connect timeout). Two instances never get the same row,
        and a device is in one live claim at a time: a second rollout's member for it waits for the first."""
        inst = ids.instance_id(instance)
        if not 1 <= limit <= 1000:
            raise InputError(f"claim limit {limit} must be 1-1000")
        when = time.time() if now is None else now
        sql = ("SELECT rd.rollout_id, rd.device_id, r.release_ref, rd.attempts FROM rollout_devices rd "
               "JOIN rollouts r ON r.id = rd.rollout_id JOIN devices d ON d.id = rd.device_id "
               "WHERE r.state = 'running' AND (rd.status = 'pending' OR (rd.status = 'claimed' AND rd.lease_until < ?)) "
               # one deployment at a time per device: another rollout's live claim on it makes this one wait
               "AND NOT EXISTS (SELECT 1 FROM rollout_devices o WHERE o.device_id = rd.device_id AND "
               "o.rollout_id <> rd.rollout_id AND o.status = 'claimed' AND o.lease_until >= ?)"
               + ((" AND (d.instance = ?" + ("" if offline_s is None else
                                              " OR (d.instance IS NULL AND (d.last_seen IS NULL OR d.last_seen < ?))")
                   + ")") if connected_only else "")
               + " ORDER BY r.created_at, rd.phase, rd.device_id LIMIT ?" + self.db.skip_locked)
        where: list[Any] = [inst] + ([] if offline_s is None else [when - offline_s])
        params: list[Any] = [when, when] + (where if connected_only else []) + [limit]
        out: list[Claim] = []
        with self.db.transaction():
            for rid, dev, ref, attempts in self.db.execute(sql, params):
                if any(c.device_id == dev for c in out):  # a second rollout's member for it waits for the first
                    continue
                until = when + lease_s
                # the same condition again: the row lock (or SQLite's write lock) already excludes a
                # second claimer; this keeps a claim single even if that ever changed
                if self.db.execute("UPDATE rollout_devices SET status = 'claimed', claimed_by = ?, lease_until = ?, "
                                   "attempts = attempts + 1, updated_at = ? WHERE rollout_id = ? AND device_id = ? AND "
                                   "(status = 'pending' OR (status = 'claimed' AND lease_until < ?)) RETURNING device_id",
                                   (inst, until, when, rid, dev, when)):
                    out.append(Claim(rid, dev, ref, until, int(attempts) + 1, self.progress(rid, dev)))
        return out

    def reclaim(self, instance: str, *, now: float | None = None) -> int:
        """An instance starts (again): the claims it held in an earlier life are pending once more, so it
        resumes them at once rather than after their leases run out. How many."""
        rows = self.db.execute("UPDATE rollout_devices SET status = 'pending', claimed_by = NULL, lease_until = NULL, "
                               "updated_at = ? WHERE status = 'claimed' AND claimed_by = ? RETURNING device_id",
                               (time.time() if now is None else now, ids.instance_id(instance)))
        if rows:
            self.db.notify("reclaimed")
        return len(rows)

    def renew(self, instance: str, rollout_id: str, device_id: str, *, lease_s: float = 30.0,
              now: float | None = None) -> bool:
        """Extend a lease this instance still holds; False once another instance took the work over, or
        when the device now connects through another instance (the claim is then handed back at once:
        pending, for that instance to take, from the progress stored so far)."""
        when = time.time() if now is None else now
        inst, dev = ids.instance_id(instance), ids.device_id(device_id)
        with self.db.transaction():
            if self.db.execute("SELECT 1 FROM devices WHERE id = ? AND instance IS NOT NULL AND instance <> ?", (dev, inst)):
                self.db.execute("UPDATE rollout_devices SET status = 'pending', claimed_by = NULL, lease_until = NULL, "
                                "updated_at = ? WHERE rollout_id = ? AND device_id = ? AND status = 'claimed' AND "
                                "claimed_by = ?", (when, ids.rollout_id(rollout_id), dev, inst))
                return False
            rows = self.db.execute("UPDATE rollout_devices SET lease_until = ?, updated_at = ? WHERE rollout_id = ? AND "
                                   "device_id = ? AND status = 'claimed' AND claimed_by = ? RETURNING device_id",
                                   (when + lease_s, when, ids.rollout_id(rollout_id), dev, inst))
        return bool(rows)

    def finish(self, instance: str, rollout_id: str, device_id: str, *, ok: bool, detail: dict[str, Any],
               now: float | None = None) -> bool:
        """Record a device's outcome, fenced by the claim: False (nothing written) if the lease was lost."""
        when = time.time() if now is None else now
        rows = self.db.execute("UPDATE rollout_devices SET status = ?, detail = ?, claimed_by = NULL, lease_until = NULL, "
                               "updated_at = ? WHERE rollout_id = ? AND device_id = ? AND status = 'claimed' AND "
                               "claimed_by = ? RETURNING device_id",
                               ("succeeded" if ok else "failed", _json(detail), when, ids.rollout_id(rollout_id),
                                ids.device_id(device_id), ids.instance_id(instance)))
        return bool(rows)

    # -- progress -------------------------------------------------------------------------
    def save_progress(self, rollout_id: str, device_id: str, region: str, *, acked: int, sector: int, total: int,
                      now: float | None = None) -> None:
        """The device acknowledged `acked` bytes of `region` (last whole sector at `sector`): resume from here."""
        if not (0 <= acked <= total <= 1 << 32 and 0 <= sector < 1 << 32):
            raise InputError(f"region {region}: progress {acked}/{total} at sector 0x{sector:x} is out of range")
        self.db.execute("INSERT INTO progress (rollout_id, device_id, region, acked, sector, total, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rollout_id, device_id, region) DO UPDATE SET "
                        "acked = excluded.acked, sector = excluded.sector, total = excluded.total, "
                        "updated_at = excluded.updated_at",
                        (ids.rollout_id(rollout_id), ids.device_id(device_id), ids.region_name(region), acked, sector,
                         total, time.time() if now is None else now))

    def progress(self, rollout_id: str, device_id: str) -> dict[str, tuple[int, int, int]]:
        """region -> (acked bytes, last acknowledged sector, total bytes)."""
        rows = self.db.execute("SELECT region, acked, sector, total FROM progress WHERE rollout_id = ? AND device_id = ? "
                               "ORDER BY region", (ids.rollout_id(rollout_id), ids.device_id(device_id)))
        return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}

    # -- events ---------------------------------------------------------------------------
    def add_event(self, kind: str, *, rollout_id: str | None = None, device_id: str | None = None,
                  detail: dict[str, Any] | None = None, now: float | None = None) -> None:
        ids.label(kind)
        self.db.execute("INSERT INTO events (time, kind, rollout_id, device_id, detail) VALUES (?, ?, ?, ?, ?)",
                        (time.time() if now is None else now, kind,
                         None if rollout_id is None else ids.rollout_id(rollout_id),
                         None if device_id is None else ids.device_id(device_id), _json(detail or {})))
        self._added += 1
        if self._added % PRUNE_EVERY == 0:
            self.prune_events(now=now)

    def events(self, *, rollout_id: str | None = None, limit: int = 100, after: int = 0) -> list[Event]:
        """The newest `limit` events with an id above `after` (oldest first)."""
        where, params = "WHERE id > ?", list[Any]([int(after)])
        if rollout_id:
            where, params = where + " AND rollout_id = ?", params + [ids.rollout_id(rollout_id)]
        rows = self.db.execute(f"SELECT id, time, kind, rollout_id, device_id, detail FROM events {where} "
                               "ORDER BY id DESC LIMIT ?", params + [max(1, min(limit, 10_000))])
        return [Event(int(r[0]), float(r[1]), r[2], r[3], r[4], json.loads(r[5])) for r in reversed(rows)]

    def prune_events(self, *, now: float | None = None) -> int:
        """Drop events older than the age limit and all but the newest `event_max_count`. How many went."""
        when = time.time() if now is None else now
        gone = len(self.db.execute("DELETE FROM events WHERE time < ? RETURNING id", (when - self.event_max_age_s,)))
        keep = self.db.execute("SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?", (self.event_max_count - 1,))
        if keep:
            gone += len(self.db.execute("DELETE FROM events WHERE id < ? RETURNING id", (keep[0][0],)))
        return gone

    # -- wake-ups -------------------------------------------------------------------------
    def listen(self) -> None:
        """Start collecting wake-ups (a later `wait` returns at once if one came meanwhile)."""
        self.db.listen()

    def wait(self, timeout: float) -> bool:
        """Block until another instance changed rollout work, or `timeout` s; then re-read."""
        return self.db.wait(timeout)
