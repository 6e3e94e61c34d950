"""The crash-safe spool: one sealed file per recording plus a SQLite index.

Durability order, for every recording the intake accepts:

    1. sealed bytes stream into ``data/.tmp-*``          (nothing visible yet)
    2. fsync the temp file, rename to ``data/<id>.<rand>.seal``, fsync ``data/``
    3. one transaction: allocate the sequence number, sign the manifest, insert the row
       (WAL + synchronous=FULL: the commit is on the card when it returns)
    4. only now does the workstation hear 201

A crash before 3 leaves a file without a row; a crash before 2 leaves a temp file. Startup
recovery (``recover_intake``) deletes temp files and moves row-less files to ``quarantine/``
with a report; it never deletes a recording. A row whose file vanished becomes ``lost`` and
is reported. Deletion happens only after a verified custody receipt (``purge``).

Several programs share the spool (intake, forwarder, status panel), each with its own
connection; writers serialise on ``BEGIN IMMEDIATE`` and wait up to ``busy_timeout``.
Each role holds an exclusive lock file while running so two intakes never share a spool and
recovery never races a live writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import sqlite_utils

from edge.custody.receipt import VerifiedReceipt
from edge.durable import TEMP_PREFIX, fsync_dir
from edge.errors import IntegrityError, SpoolConflict, SpoolError, SpoolFull, SpoolNotFound
from edge.seal.format import RECORDING_ID_RE, TAG_SIZE
from edge.seal.manifest import Manifest
from edge.seal.sealer import SealResult
from edge.spool.clock import Stamp, age_seconds, now_stamp
from edge.spool.lifecycle import WAITING, Event, State, next_state, sources_for

__all__ = [
    "IntakeReceipt",
    "Recording",
    "RecoveryReport",
    "Spool",
    "SpoolSummary",
    "sealed_size_estimate",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- monotonic, never reused
    recording_id     TEXT NOT NULL UNIQUE,
    state            TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 1,          -- 0 urgent, 1 bulk
    file             TEXT,
    plaintext_size   INTEGER NOT NULL,
    plaintext_sha256 TEXT NOT NULL,
    sealed_size      INTEGER NOT NULL,
    sealed_sha256    TEXT NOT NULL,
    manifest         BLOB,
    workstation      TEXT NOT NULL DEFAULT '',
    operator         TEXT NOT NULL DEFAULT '',
    captured_at      TEXT NOT NULL DEFAULT '',
    content_type     TEXT NOT NULL DEFAULT '',
    stored_at        REAL NOT NULL,
    stored_boot_id   TEXT NOT NULL,
    stored_boottime  REAL NOT NULL,
    sending_at       REAL,
    receipted_at     REAL,
    purged_at        REAL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    receipt          BLOB
);
CREATE INDEX IF NOT EXISTS recordings_queue ON recordings(state, priority, seq);
-- summary() runs every second (intake heartbeat) and must not read the whole table: after
-- days offline the backlog is tens of thousands of rows, plus 30 days of tombstones. These
-- let it read compact index entries only (bench/custody_chain.py: 30 ms -> 3 ms at 50k).
CREATE INDEX IF NOT EXISTS recordings_state_size ON recordings(state, sealed_size);
CREATE INDEX IF NOT EXISTS recordings_oldest_waiting ON recordings(seq)
    WHERE state IN ('stored','sending');
CREATE INDEX IF NOT EXISTS recordings_receipted_at ON recordings(receipted_at);
CREATE TABLE IF NOT EXISTS spool_events (
    id           INTEGER PRIMARY KEY,
    at           REAL NOT NULL,
    kind         TEXT NOT NULL,
    recording_id TEXT,
    detail       TEXT NOT NULL
);
"""

# Per-file overhead of the sealed format beyond one tag per segment: header with the
# wrapped key (ML-KEM ciphertext is 1088 bytes) and the recording id.
_HEADER_ALLOWANCE = 2048


def sealed_size_estimate(plaintext_size: int, segment_size: int = 64 * 1024) -> int:
    segments = plaintext_size // segment_size + 1
    return plaintext_size + segments * TAG_SIZE + _HEADER_ALLOWANCE


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Recording:
    seq: int
    recording_id: str
    state: State
    priority: int
    file: str | None
    plaintext_size: int
    plaintext_sha256: str
    sealed_size: int
    sealed_sha256: str
    manifest: bytes | None
    workstation: str
    operator: str
    captured_at: str
    content_type: str
    stored_at: float
    stored_boot_id: str
    stored_boottime: float
    sending_at: float | None
    receipted_at: float | None
    purged_at: float | None
    attempts: int
    receipt: bytes | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Recording:
        return cls(**{**row, "state": State(row["state"])})

    def intake_receipt(self) -> IntakeReceipt:
        return IntakeReceipt(self.recording_id, self.plaintext_sha256, self.plaintext_size,
                             self.seq, _iso(self.stored_at) or "")

    def age_s(self, now: Stamp | None = None) -> float | None:
        return age_seconds(self.stored_at, self.stored_boot_id, self.stored_boottime, now)


@dataclass(frozen=True)
class IntakeReceipt:
    """What the workstation gets back: proof the recording is durable on the appliance."""

    recording_id: str
    sha256: str
    size: int
    sequence: int
    stored_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"recording_id": self.recording_id, "sha256": self.sha256, "size": self.size,
                "sequence": self.sequence, "stored_at": self.stored_at}


@dataclass(frozen=True)
class SpoolSummary:
    waiting_count: int
    waiting_bytes: int
    oldest_waiting_age_s: float | None
    oldest_waiting_id: str | None
    receipted_count: int
    lost_count: int
    used_bytes: int
    quota_bytes: int
    free_bytes: int          # filesystem free space for the spool
    reserve_bytes: int
    refusing: bool           # a typical recording would be refused now
    nearly_full: bool
    last_receipt_at: float | None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["last_receipt_at"] = _iso(self.last_receipt_at)
        return d


@dataclass
class _PendingCommit:
    tmp: Path
    seal: SealResult
    recording_id: str
    device_id: str
    metadata: dict[str, str]
    priority: int
    sign: Callable[[Manifest], bytes]
    name: str = ""
    receipt: IntakeReceipt | None = None
    result: tuple[IntakeReceipt, bool] | None = None
    error: Exception | None = None
    done: bool = False

    def succeed(self, receipt: IntakeReceipt, created: bool) -> None:
        self.result, self.done = (receipt, created), True

    def fail(self, error: Exception) -> None:
        self.error, self.done = error, True


@dataclass
class RecoveryReport:
    temp_removed: list[str]
    quarantined: list[str]
    lost: list[str]
    purged_leftovers: list[str]
    released: int = 0

    @property
    def clean(self) -> bool:
        return not (self.quarantined or self.lost)


class Spool:
    """One spool directory. Each process makes its own instance (its own connection)."""

    TYPICAL_RECORDING = 5 * 1024 * 1024  # used for "would refuse" / "nearly full" status

    def __init__(self, directory: Path, *, quota_bytes: int, reserve_bytes: int,
                 segment_size: int = 64 * 1024) -> None:
        self.dir = Path(directory)
        self.data_dir = self.dir / "data"
        self.quarantine_dir = self.dir / "quarantine"
        self.lock_dir = self.dir / "locks"
        self.quota_bytes = quota_bytes
        self.reserve_bytes = reserve_bytes
        self.segment_size = segment_size
        for d in (self.dir, self.data_dir, self.quarantine_dir, self.lock_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._commit_cv = threading.Condition()
        self._pending: list[_PendingCommit] = []
        self._committing = False
        self._used_cache: tuple[float, int] | None = None  # (monotonic time, bytes)
        self._reserved = 0
        self._held_locks: dict[str, int] = {}
        self._conn = self._connect()
        self.db = sqlite_utils.Database(self._conn)

    # ------------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.dir / "spool.db", timeout=30.0, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        # Read back: on some filesystems WAL silently stays off.
        if str(mode).lower() != "wal":
            raise SpoolError(f"{self.dir}/spool.db: journal_mode is {mode!r}, not WAL: put the "
                             "spool on a local ext4 filesystem", key="spool.no_wal")
        conn.execute("PRAGMA synchronous = FULL")
        if conn.execute("PRAGMA synchronous").fetchone()[0] != 2:
            raise SpoolError("PRAGMA synchronous=FULL did not take effect", key="spool.no_sync")
        conn.executescript(SCHEMA)
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            for fd in self._held_locks.values():
                os.close(fd)
            self._held_locks.clear()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    def _event(self, conn: sqlite3.Connection, kind: str, recording_id: str | None,
               detail: str) -> None:
        conn.execute("INSERT INTO spool_events(at, kind, recording_id, detail) VALUES (?,?,?,?)",
                     (time.time(), kind, recording_id, detail))

    # ------------------------------------------------------------------ role locks
    def acquire_role(self, role: str) -> None:
        """Hold ``locks/<role>.lock`` for this process's life; refuse a second instance."""
        path = self.lock_dir / f"{role}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolError(f"another 'edge {role}' is already running on {self.dir}: stop it "
                             "first (systemctl status edge-" + role + ")",
                             key="spool.busy") from None
        self._held_locks[role] = fd

    # ------------------------------------------------------------------ reading
    def get(self, recording_id: str) -> Recording | None:
        rows = self._query("SELECT * FROM recordings WHERE recording_id = ?", (recording_id,))
        return Recording.from_row(rows[0]) if rows else None

    def require(self, recording_id: str) -> Recording:
        rec = self.get(recording_id)
        if rec is None:
            raise SpoolNotFound(f"recording {recording_id!r} is not in the spool")
        return rec

    def file_path(self, rec: Recording) -> Path:
        if rec.file is None:
            raise SpoolNotFound(f"recording {rec.recording_id!r} has no file")
        return self.data_dir / rec.file

    def open_sealed(self, recording_id: str) -> BinaryIO:
        rec = self.require(recording_id)
        if rec.state not in WAITING:
            raise SpoolNotFound(f"recording {recording_id!r} is {rec.state.value}, not waiting")
        return self.file_path(rec).open("rb")

    def waiting(self, limit: int = 100, *, after: tuple[int, int] | None = None,
                max_priority: int = 1) -> list[Recording]:
        """Waiting recordings, urgent before bulk, each class oldest first (by sequence)."""
        sql = ("SELECT * FROM recordings WHERE state IN ('stored','sending') AND priority <= ?")
        params: list[Any] = [max_priority]
        if after is not None:
            sql += " AND (priority, seq) > (?, ?)"
            params += [after[0], after[1]]
        sql += " ORDER BY priority, seq LIMIT ?"
        params.append(limit)
        return [Recording.from_row(r) for r in self._query(sql, tuple(params))]

    def used_bytes(self) -> int:
        row = self._query("SELECT COALESCE(SUM(sealed_size),0) AS n FROM recordings "
                          "WHERE state IN ('stored','sending','receipted')")
        return int(row[0]["n"])

    def free_bytes(self) -> int:
        st = os.statvfs(self.dir)
        return st.f_bavail * st.f_frsize

    def summary(self) -> SpoolSummary:
        # One read transaction, so the figures are one snapshot. Each statement is served by
        # an index (see SCHEMA): per-state counts and bytes from (state, sealed_size) without
        # touching purged tombstones, the last receipt from (receipted_at), the oldest
        # waiting row as the first entry of the partial index on waiting rows (without
        # INDEXED BY the planner, lacking statistics, sorts every waiting row instead).
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                rows = self._conn.execute(
                    "SELECT state, COUNT(*) AS n, COALESCE(SUM(sealed_size), 0) AS bytes "
                    "FROM recordings WHERE state IN ('stored','sending','receipted','lost') "
                    "GROUP BY state").fetchall()
                last_receipt = self._conn.execute(
                    "SELECT MAX(receipted_at) FROM recordings").fetchone()[0]
                oldest = self._conn.execute(
                    "SELECT * FROM recordings INDEXED BY recordings_oldest_waiting "
                    "WHERE state IN ('stored','sending') ORDER BY seq LIMIT 1").fetchone()
            finally:
                self._conn.execute("COMMIT")

        by_state = {r["state"]: (int(r["n"]), int(r["bytes"])) for r in rows}

        def count(*states: str) -> int:
            return sum(by_state.get(st, (0, 0))[0] for st in states)

        def nbytes(*states: str) -> int:
            return sum(by_state.get(st, (0, 0))[1] for st in states)

        oldest_rec = Recording.from_row(dict(oldest)) if oldest is not None else None
        used = nbytes("stored", "sending", "receipted")
        free = self.free_bytes()
        typical = sealed_size_estimate(self.TYPICAL_RECORDING, self.segment_size)
        refusing = (used + typical > self.quota_bytes
                    or free - typical < self.reserve_bytes)
        nearly_full = refusing or used > 0.9 * self.quota_bytes or \
            free < self.reserve_bytes + max(self.reserve_bytes, 256 * 1024 * 1024)
        return SpoolSummary(
            waiting_count=count("stored", "sending"),
            waiting_bytes=nbytes("stored", "sending"),
            oldest_waiting_age_s=oldest_rec.age_s() if oldest_rec else None,
            oldest_waiting_id=oldest_rec.recording_id if oldest_rec else None,
            receipted_count=count("receipted"),
            lost_count=count("lost"),
            used_bytes=used,
            quota_bytes=self.quota_bytes,
            free_bytes=free,
            reserve_bytes=self.reserve_bytes,
            refusing=refusing,
            nearly_full=nearly_full,
            last_receipt_at=last_receipt,
        )

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM spool_events ORDER BY id DESC LIMIT ?", (limit,))

    # ------------------------------------------------------------------ intake side
    def check_capacity(self, plaintext_size: int) -> int:
        """Raise SpoolFull if a recording of this size must be refused; return its estimate."""
        need = sealed_size_estimate(plaintext_size, self.segment_size)
        with self._lock:
            used = self._used_estimate() + self._reserved
            if used + need > self.quota_bytes:
                # the cache may be stale (the forwarder purged since): look again before
                # refusing
                self._used_cache = None
                used = self._used_estimate() + self._reserved
            if used + need > self.quota_bytes:
                raise SpoolFull(
                    f"storage quota reached ({used // 2**20} MiB of "
                    f"{self.quota_bytes // 2**20} MiB used by recordings not yet delivered to "
                    "the central site): keep this recording on the workstation and upload it "
                    "again later; if this lasts, call the technician to check the network")
            free = self.free_bytes() - self._reserved
            if free - need < self.reserve_bytes:
                raise SpoolFull(
                    f"the appliance's disk is nearly full ({free // 2**20} MiB free, "
                    f"{self.reserve_bytes // 2**20} MiB kept in reserve): keep this recording "
                    "on the workstation and upload it again later; call the technician",
                    key="spool.disk_reserve")
        return need

    def _used_estimate(self) -> int:
        """Bytes held, from a cache refreshed every few seconds. Only this process adds
        recordings (it holds the intake lock) and adds them to the cache itself; other
        processes only purge, so a stale value over-counts: it can refuse early, never
        overfill."""
        now = time.monotonic()
        if self._used_cache is None or now - self._used_cache[0] > 2.0:
            self._used_cache = (now, self.used_bytes())
        return self._used_cache[1]

    def _used_cache_add(self, n: int) -> None:
        with self._lock:
            if self._used_cache is not None:
                self._used_cache = (self._used_cache[0], self._used_cache[1] + n)

    @contextlib.contextmanager
    def reservation(self, plaintext_size: int) -> Iterator[None]:
        """Hold space for an upload in progress so concurrent uploads can't overrun quota."""
        with self._lock:
            need = self.check_capacity(plaintext_size)
            self._reserved += need
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= need

    def new_temp(self, recording_id: str) -> tuple[Path, BinaryIO]:
        """A fresh temp file in data/ for one upload; publish via commit_sealed or discard."""
        if not RECORDING_ID_RE.match(recording_id):
            raise ValueError(f"unsafe recording id {recording_id!r}")
        tmp = self.data_dir / f"{TEMP_PREFIX}{recording_id}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return tmp, os.fdopen(fd, "wb")

    def discard_temp(self, tmp: Path, f: BinaryIO) -> None:
        # No fsync: a temp file resurrected by a power cut is removed by recover_intake.
        f.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()

    def commit_sealed(
        self, tmp: Path, f: BinaryIO, seal: SealResult, *, recording_id: str, device_id: str,
        metadata: dict[str, str], priority: int,
        sign: Callable[[Manifest], bytes],
    ) -> tuple[IntakeReceipt, bool]:
        """Make the sealed temp file durable, then commit its row. Returns (receipt, created).

        If the id already exists (a concurrent retry won the race) our copy is removed and the
        existing receipt returned, or SpoolConflict raised when the content differs.

        Group commit: uploads finishing at the same moment share one directory fsync and one
        SQLite commit (leader/follower: whoever arrives while no batch is in progress commits
        everything queued). The per-file order of durability is unchanged: every file is
        fsynced, renamed and its directory fsynced before the transaction naming it commits.
        """
        # Step 1 (in the uploader's own thread, in parallel with other uploads): the sealed
        # bytes and the file size reach the card.
        f.flush()
        os.fsync(f.fileno())
        f.close()
        item = _PendingCommit(tmp, seal, recording_id, device_id, metadata, priority, sign)
        with self._commit_cv:
            self._pending.append(item)
            while not item.done:
                if self._committing:
                    self._commit_cv.wait()
                    continue
                self._committing = True
                batch, self._pending = self._pending, []
                self._commit_cv.release()
                try:
                    self._commit_batch(batch)
                finally:
                    self._commit_cv.acquire()
                    self._committing = False
                    self._commit_cv.notify_all()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _commit_batch(self, batch: list[_PendingCommit]) -> None:
        # Step 2: each file appears under its final name; one fsync makes all the renames
        # durable.
        published: list[_PendingCommit] = []
        try:
            for it in batch:
                it.name = f"{it.recording_id}.{os.urandom(6).hex()}.seal"
                os.replace(it.tmp, self.data_dir / it.name)
                published.append(it)
            fsync_dir(self.data_dir)
        except BaseException as e:
            for it in batch:
                self._discard_quietly(it.tmp)
                if it in published:
                    self._discard_quietly(self.data_dir / it.name)
                it.fail(e if isinstance(e, Exception) else SpoolError(str(e)))
            if not isinstance(e, Exception):
                raise
            return
        # Step 3: one transaction for the batch (WAL + synchronous=FULL: on the card when
        # COMMIT returns).
        stamp = now_stamp()
        existing: dict[int, dict[str, Any]] = {}
        try:
            with self._tx() as conn:
                for i, it in enumerate(batch):
                    row = conn.execute("SELECT * FROM recordings WHERE recording_id = ?",
                                       (it.recording_id,)).fetchone()
                    if row is not None:
                        existing[i] = dict(row)
                        continue
                    self._insert_row(conn, it, stamp)
        except BaseException as e:
            for it in batch:
                self._discard_quietly(self.data_dir / it.name)
                it.fail(e if isinstance(e, Exception) else SpoolError(str(e)))
            if not isinstance(e, Exception):
                raise
            return
        # Only now is a recording accepted.
        discarded = False
        for i, it in enumerate(batch):
            if i in existing:
                (self.data_dir / it.name).unlink(missing_ok=True)
                discarded = True
                rec = Recording.from_row(existing[i])
                if rec.plaintext_sha256 != it.seal.plaintext_sha256:
                    it.fail(SpoolConflict(
                        f"recording {it.recording_id!r} already exists with different content: "
                        "give the new recording a new id"))
                else:
                    it.succeed(rec.intake_receipt(), False)
            else:
                self._used_cache_add(it.seal.sealed_size)
                assert it.receipt is not None
                it.succeed(it.receipt, True)
        if discarded:
            fsync_dir(self.data_dir)

    def _insert_row(self, conn: sqlite3.Connection, it: _PendingCommit, stamp: Stamp) -> None:
        seal, md = it.seal, it.metadata
        cur = conn.execute(
            "INSERT INTO recordings (recording_id, state, priority, file,"
            " plaintext_size, plaintext_sha256, sealed_size, sealed_sha256,"
            " workstation, operator, captured_at, content_type,"
            " stored_at, stored_boot_id, stored_boottime)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (it.recording_id, State.STORED.value, it.priority, it.name, seal.plaintext_size,
             seal.plaintext_sha256, seal.sealed_size, seal.sealed_sha256,
             md.get("workstation", ""), md.get("operator", ""),
             md.get("captured_at", ""), md.get("content_type", ""),
             stamp.wall, stamp.boot_id, stamp.boottime))
        seq = int(cur.lastrowid or 0)
        stored_at = _iso(stamp.wall) or ""
        manifest = Manifest(
            device_id=it.device_id, recording_id=it.recording_id, seq=seq,
            plaintext_size=seal.plaintext_size, plaintext_sha256=seal.plaintext_sha256,
            sealed_size=seal.sealed_size, sealed_sha256=seal.sealed_sha256,
            suite=seal.suite, segment_size=seal.segment_size, stored_at=stored_at,
            metadata={k: v for k, v in md.items() if v})
        conn.execute("UPDATE recordings SET manifest = ? WHERE seq = ?",
                     (it.sign(manifest), seq))
        it.receipt = IntakeReceipt(it.recording_id, seal.plaintext_sha256, seal.plaintext_size,
                                   seq, stored_at)

    @staticmethod
    def _discard_quietly(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()

    def _discard(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(path.parent)

    # ------------------------------------------------------------------ forwarder side
    def _transition(self, recording_id: str, event: Event, sets: str = "",
                    params: tuple[Any, ...] = ()) -> Recording:
        sources = tuple(s.value for s in sources_for(event))
        with self._tx() as conn:
            row = conn.execute("SELECT state FROM recordings WHERE recording_id = ?",
                               (recording_id,)).fetchone()
            if row is None:
                raise SpoolNotFound(f"recording {recording_id!r} is not in the spool")
            target = next_state(State(row["state"]), event)  # raises StateError
            marks = ",".join("?" * len(sources))
            conn.execute(
                f"UPDATE recordings SET state = ?{sets} WHERE recording_id = ? "
                f"AND state IN ({marks})",
                (target.value, *params, recording_id, *sources))
        return self.require(recording_id)

    def claim(self, recording_id: str) -> Recording:
        return self._transition(recording_id, Event.CLAIM,
                                ", sending_at = ?, attempts = attempts + 1", (time.time(),))

    def release(self, recording_id: str) -> Recording:
        return self._transition(recording_id, Event.RELEASE)

    def mark_receipted(self, receipt: VerifiedReceipt) -> Recording:
        """Record a custody receipt. Only a ``VerifiedReceipt`` (made solely by
        ``edge.custody.receipt.verify_receipt``) is taken, and it must name this device's
        recording with this sealed SHA-256 and size; anything else is refused and the
        recording stays waiting."""
        if not isinstance(receipt, VerifiedReceipt):
            raise IntegrityError("only a verified custody receipt may release a recording",
                                 key="receipt.unverified")
        rec = self.require(receipt.recording_id)
        if (receipt.sealed_sha256.hex() != rec.sealed_sha256
                or receipt.sealed_size != rec.sealed_size):
            raise IntegrityError(
                f"receipt for {rec.recording_id} names sealed SHA-256 "
                f"{receipt.sealed_sha256.hex()[:12]}... ({receipt.sealed_size} bytes), the spool "
                f"holds {rec.sealed_sha256[:12]}... ({rec.sealed_size} bytes)",
                key="receipt.mismatch")
        if rec.state is State.RECEIPTED:
            return rec
        return self._transition(rec.recording_id, Event.RECEIPT,
                                ", receipted_at = ?, receipt = ?",
                                (time.time(), receipt.receipt))

    def purge(self, recording_id: str) -> Recording:
        """Delete the sealed file of a receipted recording. The row stays as a tombstone so a
        workstation retry of the same id still gets its original receipt."""
        rec = self.require(recording_id)
        if rec.state is State.PURGED:
            return rec
        if rec.state is not State.RECEIPTED or not rec.receipt:
            next_state(rec.state, Event.PURGE)  # raises StateError with the reason
            raise SpoolError(f"recording {recording_id!r} has no receipt; not purging")
        if rec.file:
            self._discard(self.data_dir / rec.file)
        return self._transition(recording_id, Event.PURGE, ", purged_at = ?, file = NULL",
                                (time.time(),))

    def quarantine(self, recording_id: str, reason: str) -> Recording:
        """A waiting recording that can never be delivered (its sealed file is damaged):
        set the file aside for a technician, mark the row ``lost`` and report it. Never a
        silent delete."""
        rec = self.require(recording_id)
        next_state(rec.state, Event.FILE_LOST)  # raises StateError if not waiting
        if rec.file and (self.data_dir / rec.file).exists():
            shutil.move(str(self.data_dir / rec.file), str(self.quarantine_dir / rec.file))
            fsync_dir(self.quarantine_dir)
            fsync_dir(self.data_dir)
        with self._tx() as conn:
            self._event(conn, "quarantined", recording_id, reason)
        return self._transition(recording_id, Event.FILE_LOST)

    def prune_purged(self, older_than_s: float) -> int:
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM recordings WHERE state = 'purged' AND purged_at < ?",
                               (time.time() - older_than_s,))
            return cur.rowcount

    # ------------------------------------------------------------------ recovery
    def recover_forwarder(self) -> int:
        """In-flight rows go back to the queue (by row id; the protocol resumes chunks)."""
        with self._tx() as conn:
            cur = conn.execute("UPDATE recordings SET state = 'stored' WHERE state = 'sending'")
            return cur.rowcount

    def finish_purges(self) -> list[str]:
        """Receipted rows whose sealed file may still be here: the forwarder stopped (crash,
        SIGKILL, power cut) between storing the receipt and deleting the file, and nothing
        else would ever delete it (``waiting()`` no longer returns the row). The verified
        receipt is durable in the row, so the deletion is finished now. Run at forwarder
        start; returns the recording ids."""
        ids = [r["recording_id"] for r in self._query(
            "SELECT recording_id FROM recordings WHERE state = 'receipted' "
            "AND receipt IS NOT NULL ORDER BY seq")]
        for rid in ids:
            self.purge(rid)
        return ids

    def recover_intake(self) -> RecoveryReport:
        """Run at intake start, holding the intake lock (no upload can be in progress)."""
        if "intake" not in self._held_locks:
            raise SpoolError("recover_intake needs the intake role lock", key="spool.busy")
        report = RecoveryReport([], [], [], [])
        # 1. temp files are uploads that never got their 201: the workstation retries.
        for p in self.data_dir.iterdir():
            if p.name.startswith(TEMP_PREFIX):
                p.unlink()
                report.temp_removed.append(p.name)
        if report.temp_removed:
            fsync_dir(self.data_dir)
        # 2. reconcile rows and files. Only file names are held in memory (not rows): a
        # large backlog must not make the intake's start-up memory grow with it.
        on_disk = {p.name for p in self.data_dir.iterdir() if p.is_file()}
        referenced: set[str] = set()
        missing: list[tuple[str, str, str]] = []
        with self._lock:
            for rid, state_text, file in self._conn.execute(
                    "SELECT recording_id, state, file FROM recordings WHERE file IS NOT NULL"):
                referenced.add(file)
                if file not in on_disk:
                    missing.append((rid, state_text, file))
        with self._tx() as conn:
            for rid, state_text, file in missing:
                r = {"recording_id": rid, "file": file}
                state = State(state_text)
                if state in WAITING:
                    conn.execute("UPDATE recordings SET state = 'lost' WHERE recording_id = ?",
                                 (r["recording_id"],))
                    self._event(conn, "lost", r["recording_id"],
                                f"sealed file {r['file']} is missing; the recording was not "
                                "delivered: ask the workstation to upload it again")
                    report.lost.append(r["recording_id"])
                elif state is State.RECEIPTED:
                    # deleted after its receipt, crash before the row said so
                    conn.execute("UPDATE recordings SET state = 'purged', purged_at = ?, "
                                 "file = NULL WHERE recording_id = ?",
                                 (time.time(), r["recording_id"]))
                    report.purged_leftovers.append(r["recording_id"])
            for name in sorted(on_disk - referenced):
                # A file the index doesn't know: never delete a recording; set it aside.
                shutil.move(str(self.data_dir / name), str(self.quarantine_dir / name))
                self._event(conn, "quarantined", name.split(".")[0],
                            f"file {name} had no index row (crash between file and row, or "
                            "copied in by hand); moved to quarantine/ for a technician")
                report.quarantined.append(name)
        if report.quarantined:
            fsync_dir(self.quarantine_dir)
            fsync_dir(self.data_dir)
        return report
