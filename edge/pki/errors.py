"""Errors of the fleet PKI, each with a stable key and a sentence an operator can act on.

Refusals of what a device or operator hands us (a CSR, a certificate) are apart from faults
of our own files (a missing CA key, an unreadable revocation list).
"""

from __future__ import annotations

from edge.errors import IntegrityError, LocalError

__all__ = [
    "CertificateRejected",
    "CsrRejected",
    "PkiError",
    "PkiFileError",
    "UnsafeIdentity",
]


class PkiError(LocalError):
    """Root of the fleet PKI's errors."""

    key = "pki.error"


class PkiFileError(PkiError, OSError):
    """A CA key, certificate or revocation file is missing, unreadable or malformed."""

    key = "pki.file"


class CsrRejected(PkiError, ValueError):
    """The CA refuses to sign this request (bad signature, wrong key type, bad name)."""

    key = "pki.csr_rejected"


class UnsafeIdentity(CsrRejected):
    """A name that must never become a certificate CN, MQTT username and topic level."""

    key = "pki.unsafe_identity"


class CertificateRejected(IntegrityError):
    """A certificate presented to us was not issued by the fleet CA for this identity, now."""

    key = "pki.cert_rejected"
