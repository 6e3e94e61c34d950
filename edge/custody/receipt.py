"""Custody receipts: the central site's signed word that it holds a recording durably.

Place in the data flow: the central receiver signs one after the sealed file is reassembled,
hash-verified and durably stored, and publishes it on ``edge/{device}/down/custody/receipt``.
The device verifies it against the central receipt public key (Ed25519) and only then may the
spool delete its copy. A broker PUBACK is never that proof; this receipt is.

The format is binary with one fixed layout, so a receipt has exactly one byte encoding
(canonical by construction) and the signature covers every byte before it, version and magic
included. Layout (big-endian):

    0   4   magic "ECRT"
    4   1   version (1)
    5   8   key id: first 8 bytes of SHA-256 of the raw 32-byte Ed25519 public key
    13  32  SHA-256 of the sealed file
    45  8   sealed file size in bytes (u64)
    53  8   time the central store committed it, Unix milliseconds (u64)
    61  1+n device id (length byte, then ASCII)
    ..  1+m recording id (length byte, then ASCII)
    ..  1+k receiver id (length byte, then ASCII)
    ..  64  Ed25519 signature over all bytes above

``VerifiedReceipt`` can only be made by ``verify_receipt``, so a function that takes one can
trust that the checks ran.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.custody.errors import (
    ReceiptBadSignature,
    ReceiptMalformed,
    ReceiptMismatch,
    ReceiptUnknownKey,
)

__all__ = [
    "RECEIPT_MAGIC",
    "RECEIPT_VERSION",
    "ReceiptFields",
    "VerifiedReceipt",
    "key_id",
    "parse_receipt",
    "sign_receipt",
    "verify_receipt",
]

RECEIPT_MAGIC = b"ECRT"
RECEIPT_VERSION = 1
_FIXED = struct.Struct(">4sB8s32sQQ")
_SIG_LEN = 64
_MAX_RECEIPT = _FIXED.size + 3 * (1 + 128) + _SIG_LEN

_DEVICE_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
_RECORDING_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_RECEIVER_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def key_id(public_key: Ed25519PublicKey) -> bytes:
    """Names the signing key inside each receipt, so a key rotation is visible, not a mystery."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8]


@dataclass(frozen=True)
class ReceiptFields:
    """What a receipt says. Parsed, not yet trusted."""

    device_id: str
    recording_id: str
    sealed_sha256: bytes
    sealed_size: int
    received_at_ms: int
    receiver_id: str
    key_id: bytes


_SEAL = object()


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt whose signature and contents were checked; made only by ``verify_receipt``."""

    fields: ReceiptFields
    receipt: bytes = field(repr=False)
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _SEAL:
            raise TypeError("VerifiedReceipt is made by verify_receipt() only")

    @property
    def device_id(self) -> str:
        return self.fields.device_id

    @property
    def recording_id(self) -> str:
        return self.fields.recording_id

    @property
    def sealed_sha256(self) -> bytes:
        return self.fields.sealed_sha256

    @property
    def sealed_size(self) -> int:
        return self.fields.sealed_size


def _text(value: str, pattern: re.Pattern[str], name: str) -> bytes:
    if not pattern.fullmatch(value):
        raise ValueError(f"{name} {value!r} has characters or a length a receipt cannot carry")
    raw = value.encode("ascii")
    return bytes((len(raw),)) + raw


def sign_receipt(private_key: Ed25519PrivateKey, *, device_id: str, recording_id: str,
                 sealed_sha256: bytes, sealed_size: int, received_at_ms: int,
                 receiver_id: str) -> bytes:
    """Canonical receipt bytes, signed. Call only after the file is durably stored."""
    if len(sealed_sha256) != 32:
        raise ValueError("sealed_sha256 must be 32 bytes")
    if not 0 <= sealed_size < 2**63 or not 0 <= received_at_ms < 2**63:
        raise ValueError("sealed_size and received_at_ms must be non-negative 63-bit integers")
    body = b"".join((
        _FIXED.pack(RECEIPT_MAGIC, RECEIPT_VERSION, key_id(private_key.public_key()),
                    sealed_sha256, sealed_size, received_at_ms),
        _text(device_id, _DEVICE_RE, "device id"),
        _text(recording_id, _RECORDING_RE, "recording id"),
        _text(receiver_id, _RECEIVER_RE, "receiver id"),
    ))
    return body + private_key.sign(body)


def _split(receipt: bytes) -> tuple[ReceiptFields, bytes, bytes]:
    """``(fields, signed body, signature)``; ReceiptMalformed unless the layout is exact."""
    if not isinstance(receipt, (bytes, bytearray)):
        raise ReceiptMalformed(f"receipt is {type(receipt).__name__}, not bytes")
    data = bytes(receipt)
    if not _FIXED.size + 6 + _SIG_LEN <= len(data) <= _MAX_RECEIPT:
        raise ReceiptMalformed(f"receipt of {len(data)} bytes cannot be a custody receipt")
    magic, version, kid, sha, size, at_ms = _FIXED.unpack_from(data)
    if magic != RECEIPT_MAGIC:
        raise ReceiptMalformed("not a custody receipt (bad magic)")
    if version != RECEIPT_VERSION:
        raise ReceiptMalformed(f"receipt version {version}; this build reads version "
                               f"{RECEIPT_VERSION}: update the device software",
                               key="receipt.unsupported_version")
    if size >= 2**63 or at_ms >= 2**63:
        raise ReceiptMalformed("receipt size or time out of range")
    pos = _FIXED.size
    texts = []
    for name, pattern in (("device id", _DEVICE_RE), ("recording id", _RECORDING_RE),
                          ("receiver id", _RECEIVER_RE)):
        if pos >= len(data):
            raise ReceiptMalformed(f"receipt truncated before {name}")
        n = data[pos]
        raw = data[pos + 1:pos + 1 + n]
        if len(raw) != n:
            raise ReceiptMalformed(f"receipt truncated in {name}")
        text = raw.decode("ascii", "replace")
        if not pattern.fullmatch(text):
            raise ReceiptMalformed(f"receipt {name} {raw!r} is not valid")
        texts.append(text)
        pos += 1 + n
    if len(data) != pos + _SIG_LEN:
        raise ReceiptMalformed(f"receipt has {len(data) - pos} bytes after the ids; "
                               f"expected exactly a {_SIG_LEN}-byte signature")
    fields = ReceiptFields(texts[0], texts[1], sha, size, at_ms, texts[2], kid)
    return fields, data[:pos], data[pos:]


def parse_receipt(receipt: bytes) -> ReceiptFields:
    """Read a receipt WITHOUT checking its signature: to route it, never to trust it."""
    return _split(receipt)[0]


def verify_receipt(public_key: Ed25519PublicKey, receipt: bytes, expect_device: str,
                   expect_recording: str, expect_sealed_sha256: bytes, *,
                   expect_sealed_size: int | None = None) -> VerifiedReceipt:
    """Check signature, then that the receipt names exactly this device, recording and file.

    Raises ``ReceiptMalformed``, ``ReceiptUnknownKey``, ``ReceiptBadSignature`` or
    ``ReceiptMismatch`` (all ``edge.errors.IntegrityError``).
    """
    fields, body, signature = _split(receipt)
    if fields.key_id != key_id(public_key):
        raise ReceiptUnknownKey(
            f"receipt for {fields.recording_id} is signed by key {fields.key_id.hex()}, not the "
            f"configured central receipt key {key_id(public_key).hex()}: if central rotated its "
            "key, install the new public key; otherwise the receipt is forged")
    try:
        public_key.verify(signature, body)
    except InvalidSignature:
        raise ReceiptBadSignature(
            f"receipt for {fields.recording_id}: signature does not verify with the central "
            "receipt key; the recording stays in the spool") from None
    wrong = []
    if fields.device_id != expect_device:
        wrong.append(f"device {fields.device_id!r} != {expect_device!r}")
    if fields.recording_id != expect_recording:
        wrong.append(f"recording {fields.recording_id!r} != {expect_recording!r}")
    if fields.sealed_sha256 != expect_sealed_sha256:
        wrong.append(f"sealed SHA-256 {fields.sealed_sha256.hex()[:16]}… != "
                     f"{bytes(expect_sealed_sha256).hex()[:16]}…")
    if expect_sealed_size is not None and fields.sealed_size != expect_sealed_size:
        wrong.append(f"size {fields.sealed_size} != {expect_sealed_size}")
    if wrong:
        raise ReceiptMismatch(
            f"receipt is genuine but not for this recording ({'; '.join(wrong)}); "
            "the recording stays in the spool")
    return VerifiedReceipt(fields, bytes(receipt), _SEAL)
