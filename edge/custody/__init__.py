"""Custody chain: forwarding sealed recordings to the central site until a signed receipt.

Pure protocol code, no I/O (docs/custody-protocol.md): ``messages`` (topics and wire format),
``receipt`` (signed receipts), ``ranges`` (byte-range sets).
"""

from __future__ import annotations

from edge.custody.errors import (
    CustodyError,
    MalformedMessage,
    ReceiptBadSignature,
    ReceiptError,
    ReceiptMalformed,
    ReceiptMismatch,
    ReceiptUnknownKey,
    UnsupportedVersion,
)
from edge.custody.messages import Alert, Publish
from edge.custody.ranges import RangeSet
from edge.custody.receipt import VerifiedReceipt, parse_receipt, sign_receipt, verify_receipt

__all__ = [
    "Alert",
    "CustodyError",
    "MalformedMessage",
    "Publish",
    "RangeSet",
    "ReceiptBadSignature",
    "ReceiptError",
    "ReceiptMalformed",
    "ReceiptMismatch",
    "ReceiptUnknownKey",
    "UnsupportedVersion",
    "VerifiedReceipt",
    "parse_receipt",
    "sign_receipt",
    "verify_receipt",
]
