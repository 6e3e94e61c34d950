"""The central custody store's index: one row per offered recording, behind a small interface.

Place in the data flow: ``CentralStore`` (store.py) keeps the sealed bytes in files and asks
an index for everything else — the accepted offer, the generation, the byte ranges held, the
receipt. The index is also the store's lock: every change to a recording happens inside
``index.locked(device, recording)``, a transaction that holds at least that recording's row
until it commits, so several receiver processes can share one store.

SQLite (sqlite_index.py) is the embedded default: ``BEGIN IMMEDIATE`` locks the whole
database, which is simple and enough for a few receivers on one machine. A PostgreSQL index
would implement the same two protocols with ``INSERT ... ON CONFLICT DO NOTHING`` followed by
``SELECT ... FOR UPDATE`` of the row: a per-recording lock. The SQL in the SQLite module is
kept portable for that (no ``INSERT OR ...``, no SQLite-only functions; sizes are BIGINT,
binary columns BLOB/BYTEA).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from edge.custody.ranges import RangeSet

__all__ = ["IndexRecord", "IndexTransaction", "RecordingIndex", "decode_ranges",
           "encode_ranges"]


@dataclass(frozen=True)
class IndexRecord:
    """What the index knows of one recording. A row exists from the accepted offer on."""

    device_id: str
    recording_id: str
    seq: int
    priority: int
    sealed_size: int
    sealed_sha256: bytes
    manifest: bytes = field(repr=False)
    generation: int = 0
    held: RangeSet = field(default_factory=RangeSet)
    offered_at: float = 0.0
    committed_at: float | None = None
    receipt: bytes | None = field(default=None, repr=False)
    # The device certificate (PEM) the manifest was verified with at commit: a recording
    # stays verifiable after the device renews its key.
    signer_cert: bytes | None = field(default=None, repr=False)

    @property
    def committed(self) -> bool:
        return self.receipt is not None


class IndexTransaction(Protocol):
    """One recording's row, locked until the transaction ends (commit on a clean exit)."""

    def get(self) -> IndexRecord | None: ...

    def insert(self, record: IndexRecord) -> None:
        """Only when ``get()`` returned None (under the same lock, so it cannot race)."""
        ...

    def set_held(self, held: RangeSet) -> None: ...

    def set_generation(self, generation: int) -> None:
        """Move to ``generation`` with nothing held."""
        ...

    def set_committed(self, receipt: bytes, committed_at: float,
                      signer_cert: bytes | None) -> None: ...


class RecordingIndex(Protocol):
    def locked(self, device_id: str, recording_id: str) -> AbstractContextManager[
            IndexTransaction]:
        """A write transaction holding (at least) this recording's row; rolled back if the
        block raises."""
        ...

    def get(self, device_id: str, recording_id: str) -> IndexRecord | None:
        """A consistent read without taking the write lock."""
        ...

    def committed(self, device_id: str | None = None, recording_id: str | None = None,
                  limit: int | None = None) -> list[IndexRecord]:
        """Committed recordings, oldest commit first, optionally filtered; with ``limit``
        only the most recent ``limit`` of them."""
        ...

    def unfinished(self) -> list[tuple[str, str]]:
        """(device, recording) of every offered but uncommitted recording (for recovery)."""
        ...

    def close(self) -> None: ...


def encode_ranges(held: RangeSet) -> str:
    """``"0-131072,262144-393216"``: one text column, no ranges table to keep in step."""
    return ",".join(f"{s}-{e}" for s, e in held)


def decode_ranges(text: str) -> RangeSet:
    if not text:
        return RangeSet()
    pairs = []
    for part in text.split(","):
        s, sep, e = part.partition("-")
        if not sep or not s.isdigit() or not e.isdigit():
            raise ValueError(f"held ranges {text[:80]!r} are damaged")
        pairs.append((int(s), int(e)))
    return RangeSet(tuple(pairs))
