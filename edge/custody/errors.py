"""Errors of the custody chain, with stable keys for telemetry and the status page.

Everything here is a fault of the *other* side (a malformed message, a forged receipt), so the
classes hang under ``RemoteError``; receipt failures under ``IntegrityError`` because they are
verification failures. The state machines never let these escape: they turn them into
``Alert`` outputs. Only ``verify_receipt`` and the decoders raise them to their callers.
"""

from __future__ import annotations

from edge.errors import IntegrityError, RemoteError

__all__ = [
    "CustodyError",
    "MalformedMessage",
    "ReceiptBadSignature",
    "ReceiptError",
    "ReceiptMalformed",
    "ReceiptMismatch",
    "ReceiptUnknownKey",
    "UnsupportedVersion",
]


class CustodyError(RemoteError):
    key = "custody.error"


class MalformedMessage(CustodyError, ValueError):
    """A custody message that does not follow docs/custody-protocol.md; it is dropped."""

    key = "custody.malformed"


class UnsupportedVersion(MalformedMessage):
    """A well-framed message of a protocol version this build does not speak."""

    key = "custody.unsupported_version"


class ReceiptError(IntegrityError):
    """A custody receipt that must not be trusted: the recording stays in the spool."""

    key = "receipt.invalid"


class ReceiptMalformed(ReceiptError):
    key = "receipt.malformed"


class ReceiptBadSignature(ReceiptError):
    key = "receipt.bad_signature"


class ReceiptUnknownKey(ReceiptBadSignature):
    """Signed by a key other than the one configured (a rotation, or a forgery)."""

    key = "receipt.unknown_key"


class ReceiptMismatch(ReceiptError):
    """Validly signed, but for another device, recording, hash or size."""

    key = "receipt.mismatch"
