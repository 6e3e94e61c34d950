"""Where the fleet view keeps its state: latest record per office + downsampled history.

Place in the data flow: the service applies each observation to its in-memory records and,
once a second, hands the changed records and the batch's history buckets to ``save`` — one
transaction, one statement per table (executemany), whatever the number of messages. The
dashboard and the metrics read the in-memory records; only the per-office charts read
history back. At 7,000 offices reporting every 60 s that is ~120 records and ~240 bucket
upserts a second, well within either backend.

Two backends behind one interface: SQLite (embedded default, WAL) and PostgreSQL (when
ops already run one, or for several fleet services sharing a database). Both merge history
buckets in SQL exactly as ``model.merge_buckets`` does in Python.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.central.fleet.model import Bucket, DeviceRecord, Retention
from edge.errors import EdgeError, LocalError, RemoteError

__all__ = [
    "BUCKET_COLUMNS",
    "DEVICE_COLUMNS",
    "FleetStore",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]

log = logging.getLogger(__name__)

DEVICE_COLUMNS = ("device_id", "first_seen", "status", "status_at", "status_reason",
                  "telemetry_raw", "telemetry_at", "telemetry_count", "rejected_count",
                  "last_reject_at", "last_reject")
BUCKET_COLUMNS = ("device_id", "res", "start", "samples", "wired", "mobile", "no_uplink",
                  "backlog_items_max", "backlog_bytes_max", "backlog_age_max",
                  "disk_free_min", "mobile_used_max")
SUMMED = ("samples", "wired", "mobile", "no_uplink")
MAXED = ("backlog_items_max", "backlog_bytes_max", "backlog_age_max", "mobile_used_max")
MINNED = ("disk_free_min",)


class StoreError(LocalError):
    key = "fleet.store"


class StoreUnavailable(StoreError, RemoteError):
    """The database server cannot be reached; the service keeps the batch and retries."""

    key = "fleet.store_unavailable"


def device_row(r: DeviceRecord) -> tuple[Any, ...]:
    return tuple(getattr(r, c) for c in DEVICE_COLUMNS)


def bucket_row(b: Bucket) -> tuple[Any, ...]:
    return tuple(getattr(b, c) for c in BUCKET_COLUMNS)


def record_from_row(row: Sequence[Any]) -> DeviceRecord | None:
    values = dict(zip(DEVICE_COLUMNS, row, strict=True))
    try:
        return DeviceRecord(**values)
    except EdgeError as e:
        # A payload saved by a newer central version this one cannot read: keep the office,
        # drop its last telemetry (the next message refills it).
        log.warning("fleet store: %s: saved telemetry unreadable (%s); dropped",
                    values["device_id"], e)
        values["telemetry_raw"] = None
        values["telemetry_at"] = None
        return DeviceRecord(**values)


def bucket_from_row(row: Sequence[Any]) -> Bucket:
    return Bucket(**dict(zip(BUCKET_COLUMNS, row, strict=True)))


class FleetStore(abc.ABC):
    """One writer (the service's flush loop) and any number of readers (web requests)."""

    retention: Retention

    @abc.abstractmethod
    def load_devices(self) -> list[DeviceRecord]:
        """Every office's latest record: the service's memory at start."""

    @abc.abstractmethod
    def save(self, devices: Sequence[DeviceRecord], buckets: Sequence[Bucket]) -> None:
        """Upsert latest records (whole) and merge buckets, in one transaction."""

    @abc.abstractmethod
    def history(self, device_id: str, res: int, since: float, until: float) -> list[Bucket]:
        """Buckets of one office at one resolution with since <= start < until, oldest first."""

    @abc.abstractmethod
    def prune(self, now: float) -> int:
        """Drop history older than each tier's retention; return rows dropped."""

    @abc.abstractmethod
    def forget(self, device_id: str) -> bool:
        """Remove a decommissioned office and its history."""

    @abc.abstractmethod
    def close(self) -> None: ...


def open_store(url: str, retention: Retention | None = None) -> FleetStore:
    """``sqlite:///abs/path.db``, ``sqlite:relative.db`` or a bare path → SQLite;
    ``postgresql://...`` / ``postgres://...`` → PostgreSQL (psycopg 3)."""
    ret = retention or Retention()
    if url.startswith(("postgresql://", "postgres://")):
        from edge.central.fleet.store_postgres import PostgresStore

        return PostgresStore(url, ret)
    path = url
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
    elif url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:")
    if not path or "://" in path:
        raise StoreError(f"store URL {url!r} is not understood: use sqlite:///path/fleet.db "
                         "or postgresql://user@host/dbname", key="fleet.store_url")
    from edge.central.fleet.store_sqlite import SqliteStore

    return SqliteStore(Path(path), ret)
