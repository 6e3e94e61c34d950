"""Errors of the central custody store: local faults of this machine (disk, index, layout)."""

from __future__ import annotations

from edge.errors import LocalError

__all__ = ["StoreError"]


class StoreError(LocalError):
    """The custody store cannot do what was asked: a damaged index, a full or read-only disk.

    Receivers log it and let the custody machine retry (its operation times out and reloads);
    nothing is reported as held or committed unless it is durable.
    """

    key = "central.store"
