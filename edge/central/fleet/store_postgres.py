"""PostgreSQL backend of the fleet store (psycopg 3), for sites that already run PostgreSQL.

Same tables and the same bucket merge as the SQLite backend (GREATEST/LEAST ignore NULLs,
which is what ``model.merge_buckets`` does). ``executemany`` runs in psycopg's pipeline
mode: one round trip per batch rather than per row. A dropped connection is reopened on the
next call; the failed batch raises ``StoreUnavailable`` and the service keeps it for retry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from edge.central.fleet.model import Bucket, DeviceRecord, Retention
from edge.central.fleet.store import (
    BUCKET_COLUMNS,
    DEVICE_COLUMNS,
    MAXED,
    MINNED,
    SUMMED,
    FleetStore,
    StoreError,
    StoreUnavailable,
    bucket_from_row,
    bucket_row,
    device_row,
    record_from_row,
)

__all__ = ["PostgresStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_device (
    device_id TEXT PRIMARY KEY,
    first_seen DOUBLE PRECISION NOT NULL,
    status TEXT,
    status_at DOUBLE PRECISION,
    status_reason TEXT,
    telemetry_raw TEXT,
    telemetry_at DOUBLE PRECISION,
    telemetry_count BIGINT NOT NULL DEFAULT 0,
    rejected_count BIGINT NOT NULL DEFAULT 0,
    last_reject_at DOUBLE PRECISION,
    last_reject TEXT
);
CREATE TABLE IF NOT EXISTS fleet_history (
    device_id TEXT NOT NULL,
    res INTEGER NOT NULL,
    start BIGINT NOT NULL,
    samples INTEGER NOT NULL,
    wired INTEGER NOT NULL,
    mobile INTEGER NOT NULL,
    no_uplink INTEGER NOT NULL,
    backlog_items_max BIGINT NOT NULL,
    backlog_bytes_max BIGINT NOT NULL,
    backlog_age_max BIGINT,
    disk_free_min BIGINT,
    mobile_used_max BIGINT,
    PRIMARY KEY (device_id, res, start)
);
CREATE INDEX IF NOT EXISTS fleet_history_by_age ON fleet_history (res, start);
"""


def _merge_sql() -> str:
    h = "fleet_history"
    sets = [f"{c} = {h}.{c} + excluded.{c}" for c in SUMMED]
    sets += [f"{c} = GREATEST({h}.{c}, excluded.{c})" for c in MAXED]
    sets += [f"{c} = LEAST({h}.{c}, excluded.{c})" for c in MINNED]
    cols = ", ".join(BUCKET_COLUMNS)
    marks = ", ".join("%s" for _ in BUCKET_COLUMNS)
    return (f"INSERT INTO {h} ({cols}) VALUES ({marks}) "
            f"ON CONFLICT (device_id, res, start) DO UPDATE SET {', '.join(sets)}")


def _upsert_device_sql() -> str:
    cols = ", ".join(DEVICE_COLUMNS)
    marks = ", ".join("%s" for _ in DEVICE_COLUMNS)
    sets = ", ".join(f"{c} = excluded.{c}" for c in DEVICE_COLUMNS[1:])
    return (f"INSERT INTO fleet_device ({cols}) VALUES ({marks}) "
            f"ON CONFLICT (device_id) DO UPDATE SET {sets}")


class PostgresStore(FleetStore):
    def __init__(self, url: str, retention: Retention | None = None) -> None:
        self.url = url
        self.retention = retention or Retention()
        self._merge = _merge_sql()
        self._upsert = _upsert_device_sql()
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._w: psycopg.Connection[Any] | None = None
        self._r: psycopg.Connection[Any] | None = None
        with self._writer() as conn, conn.transaction():
            # Several fleet services may start at once against one database.
            conn.execute("SELECT pg_advisory_xact_lock(7401)")
            conn.execute(SCHEMA)

    def _open(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10,
                                   application_name="edge-central-fleet")
        except psycopg.OperationalError as e:
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL ({_redact(self.url)}): {str(e).strip()}: check "
                "the server is up and the URL (host, port, user, database)") from None

    @contextmanager
    def _writer(self) -> Iterator[psycopg.Connection[Any]]:
        with self._wlock:
            if self._w is None or self._w.closed or self._w.broken:
                self._w = self._open()
            try:
                yield self._w
            except psycopg.OperationalError as e:
                self._w.close()
                raise StoreUnavailable(f"PostgreSQL write failed: {str(e).strip()}") from None
            except psycopg.Error as e:
                raise StoreError(f"PostgreSQL write failed: {str(e).strip()}") from None

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Reads are idempotent: after a dropped connection, reconnect and try once more."""
        with self._rlock:
            for attempt in (1, 2):
                if self._r is None or self._r.closed or self._r.broken:
                    self._r = self._open()
                try:
                    return self._r.execute(sql, params).fetchall()
                except psycopg.OperationalError as e:
                    self._r.close()
                    if attempt == 2:
                        raise StoreUnavailable(
                            f"PostgreSQL read failed: {str(e).strip()}") from None
                except psycopg.Error as e:
                    raise StoreError(f"PostgreSQL read failed: {str(e).strip()}") from None
        raise AssertionError("unreachable")

    def load_devices(self) -> list[DeviceRecord]:
        rows = self._query(
            f"SELECT {', '.join(DEVICE_COLUMNS)} FROM fleet_device ORDER BY device_id")
        return [r for r in map(record_from_row, rows) if r is not None]

    def save(self, devices: Sequence[DeviceRecord], buckets: Sequence[Bucket]) -> None:
        if not devices and not buckets:
            return
        with self._writer() as conn, conn.transaction(), conn.cursor() as cur:
            if devices:
                cur.executemany(self._upsert, [device_row(d) for d in devices])
            if buckets:
                cur.executemany(self._merge, [bucket_row(b) for b in buckets])

    def history(self, device_id: str, res: int, since: float, until: float) -> list[Bucket]:
        rows = self._query(
            f"SELECT {', '.join(BUCKET_COLUMNS)} FROM fleet_history "
            "WHERE device_id = %s AND res = %s AND start >= %s AND start < %s ORDER BY start",
            (device_id, res, int(since), int(until)),
        )
        return [bucket_from_row(r) for r in rows]

    def prune(self, now: float) -> int:
        dropped = 0
        with self._writer() as conn:
            for res, keep in self.retention.tiers:
                cur = conn.execute("DELETE FROM fleet_history WHERE res = %s AND start < %s",
                                   (res, int(now - keep)))
                dropped += cur.rowcount
        return dropped

    def forget(self, device_id: str) -> bool:
        with self._writer() as conn, conn.transaction():
            conn.execute("DELETE FROM fleet_history WHERE device_id = %s", (device_id,))
            cur = conn.execute("DELETE FROM fleet_device WHERE device_id = %s", (device_id,))
            return cur.rowcount > 0

    def close(self) -> None:
        with self._wlock, self._rlock:
            for conn in (self._w, self._r):
                if conn is not None:
                    conn.close()


def _redact(url: str) -> str:
    """Never print a password from the URL into a log."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "unparsable URL"
    info.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in info.items())
