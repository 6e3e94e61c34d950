"""Errors of the central ops tools (fleet init, enrolment codes, revocation)."""

from __future__ import annotations

from edge.errors import LocalError

__all__ = ["CodeRefused", "OpsError"]


class OpsError(LocalError):
    key = "central.ops"


class CodeRefused(OpsError):
    """An enrolment request refused for a reason the technician must hear (``key`` is one of
    ``enrol.code_used``, ``enrol.code_expired``, ``enrol.code_unknown``,
    ``enrol.code_cancelled``, ``enrol.wrong_device``, ``enrol.bad_request``)."""

    key = "enrol.refused"
