"""Receipts: canonical bytes, and every kind of forgery refused with its own key."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from edge.custody.errors import (
    ReceiptBadSignature,
    ReceiptMalformed,
    ReceiptMismatch,
    ReceiptUnknownKey,
)
from edge.custody.receipt import (
    VerifiedReceipt,
    key_id,
    parse_receipt,
    sign_receipt,
    verify_receipt,
)
from edge.errors import IntegrityError

KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key()
SHA = hashlib.sha256(b"sealed").digest()


def receipt(**kw: object) -> bytes:
    args: dict[str, object] = dict(device_id="kec-3171-01", recording_id="rec-1",
                                   sealed_sha256=SHA, sealed_size=6,
                                   received_at_ms=1_714_000_000_000, receiver_id="rx-a")
    args.update(kw)
    key = args.pop("key", KEY)
    return sign_receipt(key, **args)  # type: ignore[arg-type]


def test_valid_receipt_verifies_and_carries_its_fields() -> None:
    r = receipt()
    v = verify_receipt(PUB, r, "kec-3171-01", "rec-1", SHA, expect_sealed_size=6)
    assert isinstance(v, VerifiedReceipt)
    assert (v.device_id, v.recording_id, v.sealed_sha256, v.sealed_size) == (
        "kec-3171-01", "rec-1", SHA, 6)
    assert v.fields.receiver_id == "rx-a" and v.fields.key_id == key_id(PUB)
    assert v.receipt == r


def test_receipt_bytes_are_canonical_and_deterministic() -> None:
    assert receipt() == receipt()     # Ed25519 is deterministic; the layout is fixed
    assert parse_receipt(receipt()).received_at_ms == 1_714_000_000_000


def test_verified_receipt_cannot_be_made_without_verifying() -> None:
    fields = parse_receipt(receipt())
    with pytest.raises(TypeError):
        VerifiedReceipt(fields, receipt())


@pytest.mark.parametrize(("forged", "expect", "error", "key"), [
    (dict(key=Ed25519PrivateKey.generate()), {}, ReceiptUnknownKey, "receipt.unknown_key"),
    ({}, dict(expect_sealed_sha256=hashlib.sha256(b"other").digest()), ReceiptMismatch,
     "receipt.mismatch"),
    (dict(device_id="kec-9999-01"), {}, ReceiptMismatch, "receipt.mismatch"),
    (dict(recording_id="rec-2"), {}, ReceiptMismatch, "receipt.mismatch"),
    (dict(sealed_size=7), dict(expect_sealed_size=6), ReceiptMismatch, "receipt.mismatch"),
])
def test_forgeries_are_refused(forged: dict[str, object], expect: dict[str, object],
                               error: type[Exception], key: str) -> None:
    args: dict[str, object] = dict(expect_device="kec-3171-01", expect_recording="rec-1",
                                   expect_sealed_sha256=SHA)
    args.update(expect)
    with pytest.raises(error) as e:
        verify_receipt(PUB, receipt(**forged), **args)  # type: ignore[arg-type]
    assert isinstance(e.value, IntegrityError)
    assert e.value.key == key  # type: ignore[attr-defined]


def test_a_key_id_copied_into_a_foreign_signature_is_still_refused() -> None:
    other = Ed25519PrivateKey.generate()
    body = receipt()[:-64]
    forged = body + other.sign(body)          # claims our key id, signed by another key
    with pytest.raises(ReceiptBadSignature) as e:
        verify_receipt(PUB, forged, "kec-3171-01", "rec-1", SHA)
    assert e.value.key == "receipt.bad_signature"


@given(st.data())
def test_any_single_bit_flip_is_refused(data: st.DataObject) -> None:
    r = bytearray(receipt())
    bit = data.draw(st.integers(0, len(r) * 8 - 1))
    r[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError):
        verify_receipt(PUB, bytes(r), "kec-3171-01", "rec-1", SHA)


@pytest.mark.parametrize("cut", [0, 10, 60, -65, -1])
def test_truncated_or_padded_receipts_are_malformed(cut: int) -> None:
    r = receipt()
    with pytest.raises(ReceiptMalformed):
        parse_receipt(r[:cut])
    with pytest.raises(ReceiptMalformed):
        parse_receipt(r + b"\0")


def test_unknown_version_is_named() -> None:
    r = bytearray(receipt())
    r[4] = 2
    with pytest.raises(ReceiptMalformed) as e:
        parse_receipt(bytes(r))
    assert e.value.key == "receipt.unsupported_version"


@given(st.binary(max_size=400))
def test_garbage_is_malformed_never_a_crash(b: bytes) -> None:
    with pytest.raises(ReceiptMalformed):
        parse_receipt(b)
