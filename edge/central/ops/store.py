"""The enrolment database: issued codes and every certificate the ops tools signed.

Place in the data flow: ``edge-central enrol`` adds a code (and its claim certificate);
the enrolment service and ``sign-csr`` mark it used and add the device's certificates;
``revoke`` finds a device's certificates here. One small SQLite file in the central folder
(WAL, so the service and an operator's command can use it at once; ``BEGIN IMMEDIATE`` so a
code cannot be used twice by two writers). No secret is stored: codes are kept by claim id,
and the claim key is derived from the code, which central never writes down.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge.central.ops.codes import CANCELLED, ISSUED, USED, CodeView

__all__ = ["CertRow", "CodeRow", "EnrolStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS codes (
    claim_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    office TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('issued', 'used', 'cancelled')),
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    claim_serial TEXT NOT NULL,
    claim_cert TEXT NOT NULL,
    replace_existing INTEGER NOT NULL DEFAULT 0,
    used_at REAL,
    used_via TEXT,
    device_key_sha256 TEXT,
    device_cert TEXT,
    intake_cert TEXT,
    claim_revoked INTEGER NOT NULL DEFAULT 0,
    refusals INTEGER NOT NULL DEFAULT 0,
    last_refusal TEXT
);
CREATE INDEX IF NOT EXISTS codes_device ON codes (device_id, state);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL,
    issued_at REAL NOT NULL,
    not_after REAL NOT NULL,
    claim_id TEXT,
    pem TEXT NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS certificates_identity ON certificates (identity);
"""


@dataclass(frozen=True)
class CodeRow:
    claim_id: str
    device_id: str
    office: str
    state: str
    issued_at: float
    expires_at: float
    claim_serial: str
    claim_cert: str
    replace_existing: bool
    used_at: float | None
    used_via: str | None
    device_key_sha256: str | None
    device_cert: str | None
    intake_cert: str | None
    claim_revoked: bool
    refusals: int
    last_refusal: str | None

    def view(self) -> CodeView:
        return CodeView(self.state, self.device_id, self.expires_at, self.device_key_sha256)


@dataclass(frozen=True)
class CertRow:
    serial: str
    identity: str
    kind: str        # device | intake | claim | service | broker
    issued_at: float
    not_after: float
    claim_id: str | None
    pem: str
    revoked_at: float | None


class EnrolStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # prove it took effect, as Litestream does
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode ({mode})")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time (IMMEDIATE takes the write lock before the first read)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- codes -------------------------------------------------------------------------
    def add_code(self, db: sqlite3.Connection, *, claim_id: str, device_id: str, office: str,
                 issued_at: float, expires_at: float, claim_serial: int, claim_cert: str,
                 replace_existing: bool) -> None:
        db.execute(
            "INSERT INTO codes (claim_id, device_id, office, state, issued_at, expires_at, "
            "claim_serial, claim_cert, replace_existing) VALUES (?,?,?,?,?,?,?,?,?)",
            (claim_id, device_id, office, ISSUED, issued_at, expires_at,
             format(claim_serial, "x"), claim_cert, int(replace_existing)))

    def code(self, claim_id: str, db: sqlite3.Connection | None = None) -> CodeRow | None:
        row = (db or self._db).execute("SELECT * FROM codes WHERE claim_id = ?",
                                       (claim_id,)).fetchone()
        return None if row is None else _code(row)

    def codes(self, *, device_id: str | None = None, state: str | None = None
              ) -> list[CodeRow]:
        sql, args = "SELECT * FROM codes WHERE 1=1", []
        if device_id is not None:
            sql += " AND device_id = ?"
            args.append(device_id)
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        return [_code(r) for r in self._db.execute(sql + " ORDER BY issued_at", args)]

    def cancel_codes(self, db: sqlite3.Connection, device_id: str) -> list[str]:
        rows = db.execute("SELECT claim_id FROM codes WHERE device_id = ? AND state = ?",
                          (device_id, ISSUED)).fetchall()
        db.execute("UPDATE codes SET state = ? WHERE device_id = ? AND state = ?",
                   (CANCELLED, device_id, ISSUED))
        return [r["claim_id"] for r in rows]

    def mark_used(self, db: sqlite3.Connection, claim_id: str, *, at: float, via: str,
                  device_key_sha256: str, device_cert: str, intake_cert: str) -> None:
        cur = db.execute(
            "UPDATE codes SET state = ?, used_at = ?, used_via = ?, device_key_sha256 = ?, "
            "device_cert = ?, intake_cert = ? WHERE claim_id = ? AND state = ?",
            (USED, at, via, device_key_sha256, device_cert, intake_cert, claim_id, ISSUED))
        if cur.rowcount != 1:
            raise RuntimeError(f"code {claim_id} was not in state issued")

    def note_refusal(self, claim_id: str, reason: str) -> None:
        self._db.execute("UPDATE codes SET refusals = refusals + 1, last_refusal = ? "
                         "WHERE claim_id = ?", (reason, claim_id))

    def mark_claim_revoked(self, claim_id: str) -> None:
        self._db.execute("UPDATE codes SET claim_revoked = 1 WHERE claim_id = ?", (claim_id,))

    def unrevoked_claims(self) -> list[CodeRow]:
        """Codes that are finished (used or cancelled) whose claim certificate is still
        accepted by the broker: a crash came between the answer and the revocation."""
        rows = self._db.execute("SELECT * FROM codes WHERE state != ? AND claim_revoked = 0",
                                (ISSUED,))
        return [_code(r) for r in rows]

    # -- certificates ------------------------------------------------------------------
    def add_cert(self, db: sqlite3.Connection, *, serial: int, identity: str, kind: str,
                 issued_at: float, not_after: float, pem: str,
                 claim_id: str | None = None) -> None:
        db.execute("INSERT INTO certificates (serial, identity, kind, issued_at, not_after, "
                   "claim_id, pem) VALUES (?,?,?,?,?,?,?)",
                   (format(serial, "x"), identity, kind, issued_at, not_after, claim_id, pem))

    def certs(self, identity: str, *, kinds: tuple[str, ...] = ("device", "intake"),
              active_at: float | None = None) -> list[CertRow]:
        """Certificates of a device (its identity and its intake server certificate);
        with ``active_at``, only unrevoked ones that have not expired by then."""
        marks = ",".join("?" for _ in kinds)
        sql = f"SELECT * FROM certificates WHERE identity = ? AND kind IN ({marks})"
        args: list[object] = [identity, *kinds]
        if active_at is not None:
            sql += " AND revoked_at IS NULL AND not_after > ?"
            args.append(active_at)
        return [_cert(r) for r in self._db.execute(sql + " ORDER BY issued_at", args)]

    def mark_revoked(self, serial: str, at: float) -> None:
        self._db.execute("UPDATE certificates SET revoked_at = ? WHERE serial = ? AND "
                         "revoked_at IS NULL", (at, serial))


def _code(r: sqlite3.Row) -> CodeRow:
    return CodeRow(
        claim_id=r["claim_id"], device_id=r["device_id"], office=r["office"],
        state=r["state"], issued_at=r["issued_at"], expires_at=r["expires_at"],
        claim_serial=r["claim_serial"], claim_cert=r["claim_cert"],
        replace_existing=bool(r["replace_existing"]), used_at=r["used_at"],
        used_via=r["used_via"], device_key_sha256=r["device_key_sha256"],
        device_cert=r["device_cert"], intake_cert=r["intake_cert"],
        claim_revoked=bool(r["claim_revoked"]), refusals=r["refusals"],
        last_refusal=r["last_refusal"])


def _cert(r: sqlite3.Row) -> CertRow:
    return CertRow(serial=r["serial"], identity=r["identity"], kind=r["kind"],
                   issued_at=r["issued_at"], not_after=r["not_after"],
                   claim_id=r["claim_id"], pem=r["pem"], revoked_at=r["revoked_at"])
