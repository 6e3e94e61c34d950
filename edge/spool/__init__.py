"""Crash-safe spool: SQLite index + one sealed file per recording (see store.py)."""

from edge.spool.lifecycle import Event, State
from edge.spool.store import (
    IntakeReceipt,
    Recording,
    RecoveryReport,
    Spool,
    SpoolSummary,
    sealed_size_estimate,
)

__all__ = [
    "Event",
    "IntakeReceipt",
    "Recording",
    "RecoveryReport",
    "Spool",
    "SpoolSummary",
    "State",
    "sealed_size_estimate",
]
