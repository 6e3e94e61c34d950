"""Errors people and machines can read.

Every error carries a stable ``key`` (``spool.full``, ``config.invalid``) that telemetry and
the status page show, and a sentence a technician or office clerk can act on. Local faults
(``LocalError``) are apart from faults of the remote side (``RemoteError``).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EdgeError",
    "IntegrityError",
    "LocalError",
    "RemoteError",
    "SealError",
    "SpoolConflict",
    "SpoolError",
    "SpoolFull",
    "SpoolNotFound",
    "StateError",
]


class EdgeError(Exception):
    """Root of every error this package raises on purpose."""

    key = "edge.error"

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        if key is not None:
            self.key = key

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.key


class LocalError(EdgeError):
    """Something on this machine is wrong (disk, config, keys)."""

    key = "local.error"


class RemoteError(EdgeError):
    """The other side misbehaved or refused (broker, central site, workstation)."""

    key = "remote.error"


class ConfigError(LocalError, ValueError):
    key = "config.invalid"


class SpoolError(LocalError):
    key = "spool.error"


class SpoolFull(SpoolError, OSError):
    key = "spool.full"


class SpoolConflict(SpoolError):
    """Same recording id, different content."""

    key = "spool.conflict"


class SpoolNotFound(SpoolError, KeyError):
    key = "spool.not_found"

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class StateError(SpoolError):
    """A lifecycle transition that the spool's state machine forbids."""

    key = "spool.bad_transition"


class SealError(LocalError):
    key = "seal.error"


class IntegrityError(RemoteError, ValueError):
    """A sealed file, manifest or receipt failed verification."""

    key = "integrity.failed"
