"""SQLite backend of the fleet store: the embedded default, one file, WAL.

WAL lets the web requests read history while the flush loop writes. ``synchronous=NORMAL``:
a power cut may lose the last second of fleet state, never corrupt it — and the next
telemetry round restores it anyway. Open reads ``journal_mode`` back to prove WAL took.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from edge.central.fleet.model import Bucket, DeviceRecord, Retention
from edge.central.fleet.store import (
    BUCKET_COLUMNS,
    DEVICE_COLUMNS,
    MAXED,
    MINNED,
    SUMMED,
    FleetStore,
    StoreError,
    bucket_from_row,
    bucket_row,
    device_row,
    record_from_row,
)

__all__ = ["SqliteStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_device (
    device_id TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    status TEXT,
    status_at REAL,
    status_reason TEXT,
    telemetry_raw TEXT,
    telemetry_at REAL,
    telemetry_count INTEGER NOT NULL DEFAULT 0,
    rejected_count INTEGER NOT NULL DEFAULT 0,
    last_reject_at REAL,
    last_reject TEXT
);
CREATE TABLE IF NOT EXISTS fleet_history (
    device_id TEXT NOT NULL,
    res INTEGER NOT NULL,
    start INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    wired INTEGER NOT NULL,
    mobile INTEGER NOT NULL,
    no_uplink INTEGER NOT NULL,
    backlog_items_max INTEGER NOT NULL,
    backlog_bytes_max INTEGER NOT NULL,
    backlog_age_max INTEGER,
    disk_free_min INTEGER,
    mobile_used_max INTEGER,
    PRIMARY KEY (device_id, res, start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fleet_history_by_age ON fleet_history (res, start);
"""


def _merge_sql() -> str:
    h = "fleet_history"
    sets = [f"{c} = {h}.{c} + excluded.{c}" for c in SUMMED]
    # SQLite's scalar max()/min() return NULL if any argument is NULL: coalesce both ways.
    sets += [f"{c} = max(coalesce({h}.{c}, excluded.{c}), coalesce(excluded.{c}, {h}.{c}))"
             for c in MAXED]
    sets += [f"{c} = min(coalesce({h}.{c}, excluded.{c}), coalesce(excluded.{c}, {h}.{c}))"
             for c in MINNED]
    cols = ", ".join(BUCKET_COLUMNS)
    marks = ", ".join("?" for _ in BUCKET_COLUMNS)
    return (f"INSERT INTO {h} ({cols}) VALUES ({marks}) "
            f"ON CONFLICT (device_id, res, start) DO UPDATE SET {', '.join(sets)}")


def _upsert_device_sql() -> str:
    cols = ", ".join(DEVICE_COLUMNS)
    marks = ", ".join("?" for _ in DEVICE_COLUMNS)
    sets = ", ".join(f"{c} = excluded.{c}" for c in DEVICE_COLUMNS[1:])
    return (f"INSERT INTO fleet_device ({cols}) VALUES ({marks}) "
            f"ON CONFLICT (device_id) DO UPDATE SET {sets}")


class SqliteStore(FleetStore):
    def __init__(self, path: Path, retention: Retention | None = None) -> None:
        self.path = path
        self.retention = retention or Retention()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._w = self._connect()
            self._w.executescript(SCHEMA)
            self._r = self._connect()
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the fleet database {path}: {e}: check the path "
                             "and that the directory is writable") from None
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._merge = _merge_sql()
        self._upsert = _upsert_device_sql()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                               timeout=10.0)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: SQLite refused WAL (journal_mode={mode}); "
                             "put the database on a local filesystem")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @property
    def journal_mode(self) -> str:
        with self._rlock:
            return str(self._r.execute("PRAGMA journal_mode").fetchone()[0])

    def load_devices(self) -> list[DeviceRecord]:
        with self._rlock:
            rows = self._r.execute(
                f"SELECT {', '.join(DEVICE_COLUMNS)} FROM fleet_device ORDER BY device_id"
            ).fetchall()
        return [r for r in map(record_from_row, rows) if r is not None]

    def save(self, devices: Sequence[DeviceRecord], buckets: Sequence[Bucket]) -> None:
        if not devices and not buckets:
            return
        with self._wlock:
            try:
                self._w.execute("BEGIN IMMEDIATE")
                self._w.executemany(self._upsert, map(device_row, devices))
                self._w.executemany(self._merge, map(bucket_row, buckets))
                self._w.execute("COMMIT")
            except sqlite3.Error as e:
                if self._w.in_transaction:
                    self._w.execute("ROLLBACK")
                raise StoreError(f"fleet database {self.path}: write failed: {e}") from None

    def history(self, device_id: str, res: int, since: float, until: float) -> list[Bucket]:
        with self._rlock:
            rows = self._r.execute(
                f"SELECT {', '.join(BUCKET_COLUMNS)} FROM fleet_history "
                "WHERE device_id = ? AND res = ? AND start >= ? AND start < ? ORDER BY start",
                (device_id, res, int(since), int(until)),
            ).fetchall()
        return [bucket_from_row(r) for r in rows]

    def prune(self, now: float) -> int:
        dropped = 0
        with self._wlock:
            for res, keep in self.retention.tiers:
                cur = self._w.execute("DELETE FROM fleet_history WHERE res = ? AND start < ?",
                                      (res, int(now - keep)))
                dropped += cur.rowcount
        return dropped

    def forget(self, device_id: str) -> bool:
        with self._wlock:
            self._w.execute("BEGIN IMMEDIATE")
            self._w.execute("DELETE FROM fleet_history WHERE device_id = ?", (device_id,))
            cur = self._w.execute("DELETE FROM fleet_device WHERE device_id = ?", (device_id,))
            self._w.execute("COMMIT")
        return cur.rowcount > 0

    def close(self) -> None:
        with self._wlock, self._rlock:
            self._w.close()
            self._r.close()
