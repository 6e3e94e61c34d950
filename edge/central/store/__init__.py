"""The central custody store: sealed files + an index, shared by every receiver process.

``CentralStore`` implements the custody receiver's ``CustodyStore`` contract
(docs/custody-protocol.md §8) over a directory; ``RecordingIndex`` is the small interface its
index must provide (``SqliteIndex`` is the embedded default).
"""

from edge.central.store.errors import StoreError
from edge.central.store.index import IndexRecord, IndexTransaction, RecordingIndex
from edge.central.store.sqlite_index import SqliteIndex
from edge.central.store.store import INDEX_FILE, CentralStore, RecoveryReport

__all__ = [
    "INDEX_FILE",
    "CentralStore",
    "IndexRecord",
    "IndexTransaction",
    "RecordingIndex",
    "RecoveryReport",
    "SqliteIndex",
    "StoreError",
]
