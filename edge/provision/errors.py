"""Errors of provisioning and the self-test, each with a stable key and a sentence a field
technician can act on. Faults on this device (a mistyped code, a missing bundle, a full card)
are apart from refusals by the central site (a used or expired code)."""

from __future__ import annotations

from edge.errors import LocalError, RemoteError

__all__ = [
    "BadCode",
    "BundleError",
    "ClaimChannelError",
    "EnrolRefused",
    "ProvisionError",
]


class ProvisionError(LocalError):
    key = "provision.error"


class BadCode(ProvisionError, ValueError):
    """The enrolment code as typed cannot be right (length, letters, checksum)."""

    key = "provision.bad_code"


class BundleError(ProvisionError):
    """No provisioning bundle for this code, or one that fails its checks."""

    key = "provision.bundle"


class EnrolRefused(RemoteError):
    """The central enrolment service said no; ``key`` is its reason (``enrol.code_used``)."""

    key = "enrol.refused"


class ClaimChannelError(RemoteError):
    """The one-time claim channel to the central broker could not be used."""

    key = "provision.claim_channel"
