"""The sealed format round-trips any size, and the central opener rejects every tampering."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.central.opener import open_sealed, open_sealed_to_path, verify_sealed_file
from edge.errors import IntegrityError
from edge.seal import SUITES, Manifest, Sealer, generate_sealing_keys, sign_manifest
from edge.seal.format import TAG_SIZE, Header

KEYS = generate_sealing_keys()
DEVICE_KEY = ec.generate_private_key(ec.SECP256R1())
SEG = 4096


def seal(data: bytes, rid: str = "rec-1", kem: str = "mlkem768-x25519",
         chunks: int = 7) -> tuple[bytes, bytes]:
    out = io.BytesIO()
    s = Sealer(KEYS.public().for_kem(kem), SUITES[kem], rid, SEG, out)
    step = max(1, len(data) // chunks)
    for i in range(0, len(data), step):
        s.update(data[i:i + step])
    r = s.finish()
    assert r.sealed_size == len(out.getvalue())
    m = Manifest(device_id="kec-1", recording_id=rid, seq=1, plaintext_size=r.plaintext_size,
                 plaintext_sha256=r.plaintext_sha256, sealed_size=r.sealed_size,
                 sealed_sha256=r.sealed_sha256, suite=r.suite, segment_size=SEG,
                 stored_at="2026-12-02T00:00:00Z", metadata={"workstation": "ws1"})
    return out.getvalue(), sign_manifest(m, DEVICE_KEY).to_bytes()


def open_bytes(sealed: bytes, manifest: bytes) -> bytes:
    out = io.BytesIO()
    open_sealed(io.BytesIO(sealed), manifest, DEVICE_KEY.public_key(), KEYS, out)
    return out.getvalue()


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5 * SEG + 3), kem=st.sampled_from(sorted(SUITES)),
       chunks=st.integers(1, 20))
def test_round_trip_any_size_and_chunking(data: bytes, kem: str, chunks: int) -> None:
    sealed, manifest = seal(data, kem=kem, chunks=chunks)
    assert open_bytes(sealed, manifest) == data


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG])
def test_segment_boundaries(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sealed, manifest = seal(data)
    assert open_bytes(sealed, manifest) == data


def test_suite_is_recorded_in_the_file() -> None:
    for kem in SUITES:
        sealed, _ = seal(b"abc", kem=kem)
        h = Header.decode_from(io.BytesIO(sealed).read)
        assert h.suite.name == kem


def test_plaintext_does_not_appear_in_sealed_file() -> None:
    data = b"FINGERPRINT-TEMPLATE-" * 500
    sealed, _ = seal(data)
    assert b"FINGERPRINT" not in sealed


def _resign(sealed: bytes, rid: str = "rec-1") -> bytes:
    """A manifest that honestly describes tampered bytes: forces the crypto layer to catch it."""
    h = Header.decode_from(io.BytesIO(sealed).read)
    m = Manifest(device_id="kec-1", recording_id=rid, seq=1, plaintext_size=0,
                 plaintext_sha256="0" * 64, sealed_size=len(sealed),
                 sealed_sha256=hashlib.sha256(sealed).hexdigest(), suite=h.suite.label,
                 segment_size=SEG, stored_at="x")
    return sign_manifest(m, DEVICE_KEY).to_bytes()


DATA = bytes(i % 251 for i in range(3 * SEG + 100))


@pytest.mark.parametrize("pos", [0, 9, 20, 30, 60, 500, -TAG_SIZE - 1, -1])
def test_bit_flip_is_rejected(pos: int) -> None:
    sealed, manifest = seal(DATA)
    bad = bytearray(sealed)
    bad[pos] ^= 0x01
    with pytest.raises(IntegrityError, match="does not match"):
        open_bytes(bytes(bad), manifest)
    # even with a manifest re-signed over the tampered bytes, the crypto catches it
    with pytest.raises(IntegrityError):
        open_bytes(bytes(bad), _resign(bytes(bad)))


def _segments(sealed: bytes) -> tuple[bytes, list[bytes]]:
    r = io.BytesIO(sealed)
    Header.decode_from(r.read)
    hlen = r.tell()
    body = sealed[hlen:]
    step = SEG + TAG_SIZE
    return sealed[:hlen], [body[i:i + step] for i in range(0, len(body), step)]


def test_truncation_at_a_segment_boundary_is_rejected() -> None:
    sealed, _ = seal(DATA)
    head, segs = _segments(sealed)
    cut = head + b"".join(segs[:-1])
    with pytest.raises(IntegrityError, match="authentication"):
        open_bytes(cut, _resign(cut))


def test_truncation_mid_segment_is_rejected() -> None:
    sealed, _ = seal(DATA)
    cut = sealed[:-50]
    with pytest.raises(IntegrityError):
        open_bytes(cut, _resign(cut))


def test_reordered_segments_are_rejected() -> None:
    sealed, _ = seal(DATA)
    head, segs = _segments(sealed)
    swapped = head + segs[1] + segs[0] + b"".join(segs[2:])
    with pytest.raises(IntegrityError, match="segment 0"):
        open_bytes(swapped, _resign(swapped))


def test_swapped_manifest_is_rejected() -> None:
    sealed_a, _ = seal(b"A" * 5000, rid="rec-a")
    _, manifest_b = seal(b"B" * 5000, rid="rec-b")
    with pytest.raises(IntegrityError, match="does not match"):
        open_bytes(sealed_a, manifest_b)
    # a manifest that matches the bytes but names another recording
    with pytest.raises(IntegrityError, match="manifest names"):
        open_bytes(sealed_a, _resign(sealed_a, rid="rec-b"))


def test_segments_from_another_recording_are_rejected() -> None:
    sealed_a, _ = seal(DATA, rid="rec-a")
    sealed_b, _ = seal(DATA, rid="rec-b")
    head_a, segs_a = _segments(sealed_a)
    _, segs_b = _segments(sealed_b)
    mixed = head_a + segs_b[0] + b"".join(segs_a[1:])
    with pytest.raises(IntegrityError):
        open_bytes(mixed, _resign(mixed, rid="rec-a"))


def test_manifest_from_another_device_key_is_rejected() -> None:
    sealed, _ = seal(DATA)
    other = ec.generate_private_key(ec.SECP256R1())
    h = Header.decode_from(io.BytesIO(sealed).read)
    m = Manifest(device_id="kec-1", recording_id="rec-1", seq=1, plaintext_size=0,
                 plaintext_sha256="0", sealed_size=len(sealed),
                 sealed_sha256=hashlib.sha256(sealed).hexdigest(), suite=h.suite.label,
                 segment_size=SEG, stored_at="x")
    with pytest.raises(IntegrityError, match="signature"):
        open_bytes(sealed, sign_manifest(m, other).to_bytes())


def test_wrong_central_key_cannot_open() -> None:
    sealed, manifest = seal(DATA)
    with pytest.raises(IntegrityError, match="unwrapped"):
        open_sealed(io.BytesIO(sealed), manifest, DEVICE_KEY.public_key(),
                    generate_sealing_keys(), io.BytesIO())


def test_open_to_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    sealed, manifest = seal(DATA)
    src = tmp_path / "s.seal"
    bad = bytearray(sealed)
    bad[-1] ^= 1
    src.write_bytes(bytes(bad))
    dest = tmp_path / "out.bin"
    with pytest.raises(IntegrityError):
        open_sealed_to_path(src, _resign(bytes(bad)), DEVICE_KEY.public_key(), KEYS, dest)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [src]
    src.write_bytes(sealed)
    assert verify_sealed_file(src, manifest, DEVICE_KEY.public_key()).recording_id == "rec-1"
    open_sealed_to_path(src, manifest, DEVICE_KEY.public_key(), KEYS, dest)
    assert dest.read_bytes() == DATA
