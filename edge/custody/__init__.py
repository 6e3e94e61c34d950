"""Custody chain: forwarding sealed recordings to the central site until a signed receipt.

Pure protocol code, no I/O (docs/custody-protocol.md): ``messages`` (topics and wire format),
``sender`` (device side), ``receiver`` (central side), ``receipt`` (signed receipts),
``ranges`` (byte-range sets). The paho adapters (``edge forward``, ``edge-central receive``)
drive these machines.
"""

from __future__ import annotations

from edge.custody.config import parse_receiver_config, parse_sender_config
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
from edge.custody.receiver import Receiver, ReceiverConfig, StoreView
from edge.custody.sender import Recording, Sender, SenderConfig

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
    "Receiver",
    "ReceiverConfig",
    "Recording",
    "Sender",
    "SenderConfig",
    "StoreView",
    "UnsupportedVersion",
    "VerifiedReceipt",
    "parse_receipt",
    "parse_receiver_config",
    "parse_sender_config",
    "sign_receipt",
    "verify_receipt",
]
