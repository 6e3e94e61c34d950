"""SQLite index of the central custody store: the embedded default, one file beside the data.

Durability: WAL + ``synchronous=FULL``, both read back at open (a filesystem that silently
refuses WAL, e.g. some network mounts, is refused here rather than discovered after a power
cut). A transaction's COMMIT is on disk when it returns, which is what lets the store report
bytes as held and a receipt as issued.

Sharing: every receiver process opens its own connection; ``BEGIN IMMEDIATE`` takes SQLite's
single write lock for the whole transaction (file operations included, see store.py), and
``busy_timeout`` makes the others wait rather than fail. Readers (``edge-central list``) never
block writers in WAL mode.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.central.store.errors import StoreError
from edge.central.store.index import IndexRecord, decode_ranges, encode_ranges
from edge.custody.ranges import RangeSet

__all__ = ["SCHEMA_VERSION", "SqliteIndex"]

SCHEMA_VERSION = 1

# Portable DDL (PostgreSQL: BLOB -> BYTEA, REAL -> DOUBLE PRECISION).
SCHEMA = """
CREATE TABLE IF NOT EXISTS custody_recordings (
    device_id      TEXT NOT NULL,
    recording_id   TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    priority       INTEGER NOT NULL,
    sealed_size    BIGINT NOT NULL,
    sealed_sha256  BLOB NOT NULL,
    manifest       BLOB NOT NULL,
    generation     INTEGER NOT NULL DEFAULT 0,
    held_ranges    TEXT NOT NULL DEFAULT '',
    offered_at     REAL NOT NULL,
    committed_at   REAL,
    receipt        BLOB,
    signer_cert    BLOB,
    PRIMARY KEY (device_id, recording_id)
);
CREATE INDEX IF NOT EXISTS custody_recordings_committed
    ON custody_recordings (committed_at);
"""

_COLUMNS = ("device_id, recording_id, seq, priority, sealed_size, sealed_sha256, manifest, "
            "generation, held_ranges, offered_at, committed_at, receipt, signer_cert")


def _record(row: tuple[Any, ...]) -> IndexRecord:
    (device_id, recording_id, seq, priority, sealed_size, sha, manifest, generation, held,
     offered_at, committed_at, receipt, signer_cert) = row
    return IndexRecord(
        device_id=device_id, recording_id=recording_id, seq=int(seq), priority=int(priority),
        sealed_size=int(sealed_size), sealed_sha256=bytes(sha), manifest=bytes(manifest),
        generation=int(generation), held=decode_ranges(held), offered_at=float(offered_at),
        committed_at=None if committed_at is None else float(committed_at),
        receipt=None if receipt is None else bytes(receipt),
        signer_cert=None if signer_cert is None else bytes(signer_cert))


class _Transaction:
    def __init__(self, conn: sqlite3.Connection, device_id: str, recording_id: str) -> None:
        self._conn = conn
        self._key = (device_id, recording_id)

    def get(self) -> IndexRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM custody_recordings WHERE device_id = ? AND "
            "recording_id = ?", self._key).fetchone()
        return _record(row) if row else None

    def insert(self, record: IndexRecord) -> None:
        if (record.device_id, record.recording_id) != self._key:
            raise ValueError(f"transaction for {self._key} cannot insert {record!r}")
        self._conn.execute(
            f"INSERT INTO custody_recordings ({_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.device_id, record.recording_id, record.seq, record.priority,
             record.sealed_size, record.sealed_sha256, record.manifest, record.generation,
             encode_ranges(record.held), record.offered_at, record.committed_at,
             record.receipt, record.signer_cert))

    def set_held(self, held: RangeSet) -> None:
        self._update("held_ranges = ?", (encode_ranges(held),))

    def set_generation(self, generation: int) -> None:
        self._update("generation = ?, held_ranges = ''", (generation,))

    def set_committed(self, receipt: bytes, committed_at: float,
                      signer_cert: bytes | None) -> None:
        self._update("receipt = ?, committed_at = ?, signer_cert = ?",
                     (receipt, committed_at, signer_cert))

    def _update(self, assignments: str, values: tuple[Any, ...]) -> None:
        cur = self._conn.execute(
            f"UPDATE custody_recordings SET {assignments} WHERE device_id = ? AND "
            "recording_id = ?", (*values, *self._key))
        if cur.rowcount != 1:
            raise StoreError(f"index row {self._key} vanished during its transaction")


class SqliteIndex:
    """``RecordingIndex`` in one SQLite file. One instance per process; thread-safe."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s,
                                         isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open the custody index ({e}); check the "
                             "path and its permissions") from e
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreError(f"{self.path}: journal_mode is {mode!r}, not WAL: put the custody "
                             "store on a local filesystem (ext4, xfs)", key="central.store_no_wal")
        conn.execute("PRAGMA synchronous = FULL")
        if conn.execute("PRAGMA synchronous").fetchone()[0] != 2:
            conn.close()
            raise StoreError(f"{self.path}: PRAGMA synchronous=FULL did not take effect",
                             key="central.store_no_sync")
        with self._write():
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: custody index schema {version} is newer than "
                                 f"this program's ({SCHEMA_VERSION}): upgrade edge-central",
                                 key="central.store_version")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def locked(self, device_id: str, recording_id: str) -> Iterator[_Transaction]:
        with self._write() as conn:
            yield _Transaction(conn, device_id, recording_id)

    def get(self, device_id: str, recording_id: str) -> IndexRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM custody_recordings WHERE device_id = ? AND "
                "recording_id = ?", (device_id, recording_id)).fetchone()
        return _record(row) if row else None

    def committed(self, device_id: str | None = None, recording_id: str | None = None,
                  limit: int | None = None) -> list[IndexRecord]:
        where = "committed_at IS NOT NULL"
        params: list[str | int] = []
        if device_id is not None:
            where += " AND device_id = ?"
            params.append(device_id)
        if recording_id is not None:
            where += " AND recording_id = ?"
            params.append(recording_id)
        order = "committed_at, device_id, recording_id"
        sql = f"SELECT {_COLUMNS} FROM custody_recordings WHERE {where} ORDER BY {order}"
        if limit is not None:
            newest = (f"SELECT {_COLUMNS} FROM custody_recordings WHERE {where} ORDER BY "
                      "committed_at DESC, device_id DESC, recording_id DESC LIMIT ?")
            sql = f"SELECT * FROM ({newest}) AS newest ORDER BY {order}"
            params.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [_record(r) for r in rows]

    def unfinished(self) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT device_id, recording_id FROM custody_recordings "
                "WHERE committed_at IS NULL ORDER BY device_id, recording_id").fetchall()
        return [(str(d), str(r)) for d, r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
