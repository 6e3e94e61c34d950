"""Open a sealed recording at the central site: verify, then decrypt to the original bytes.

Order of checks: the manifest's signature (device key), the sealed file's size and SHA-256
against the manifest, the header's recording id against the manifest, then each segment's
AEAD tag in order with the "last" flag at the end, then the plaintext's size and SHA-256.
Output goes to a temp file that appears at the destination only when every check passed.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.durable import publish_temp, temp_file_for
from edge.errors import IntegrityError
from edge.seal.format import TAG_SIZE, Header, segment_nonce
from edge.seal.keys import SealingPrivateKeys
from edge.seal.manifest import Manifest, verify_manifest

__all__ = ["open_sealed", "open_sealed_to_path", "verify_sealed_file"]

_READ = 1024 * 1024


def _file_sha256(f: BinaryIO) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    while chunk := f.read(_READ):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def verify_sealed_file(sealed: Path, manifest_bytes: bytes,
                       device_key: ec.EllipticCurvePublicKey) -> Manifest:
    """Check signature and hashes without decrypting (what the receiver does on arrival)."""
    manifest = verify_manifest(manifest_bytes, device_key)
    with sealed.open("rb") as f:
        digest, size = _file_sha256(f)
    if size != manifest.sealed_size or not hmac.compare_digest(digest, manifest.sealed_sha256):
        raise IntegrityError(
            f"sealed file for {manifest.recording_id} does not match its manifest "
            f"(size {size} vs {manifest.sealed_size}, or SHA-256 differs)",
            key="seal.hash_mismatch")
    return manifest


def open_sealed(sealed: BinaryIO, manifest_bytes: bytes, device_key: ec.EllipticCurvePublicKey,
                keys: SealingPrivateKeys, out: BinaryIO) -> Manifest:
    """Verify and decrypt; ``out`` receives plaintext that must be discarded on error."""
    manifest = verify_manifest(manifest_bytes, device_key)
    sealed.seek(0)
    digest, size = _file_sha256(sealed)
    if size != manifest.sealed_size or not hmac.compare_digest(digest, manifest.sealed_sha256):
        raise IntegrityError(
            f"sealed file does not match the manifest of {manifest.recording_id}",
            key="seal.hash_mismatch")
    sealed.seek(0)
    header = Header.decode_from(sealed.read)
    if header.recording_id != manifest.recording_id:
        raise IntegrityError(
            f"sealed file is recording {header.recording_id!r} but the manifest names "
            f"{manifest.recording_id!r}", key="seal.manifest_mismatch")
    if not manifest.suite.startswith(header.suite.name + "/"):
        raise IntegrityError("suite in manifest differs from the sealed file",
                             key="seal.manifest_mismatch")
    try:
        content_key = header.suite.hpke_suite().decrypt(
            header.wrapped_key, keys.for_kem(header.suite.name), info=header.hpke_info())
    except Exception:  # the HPKE binding raises a generic error on a bad wrap
        raise IntegrityError("content key cannot be unwrapped (wrong central key or damaged "
                             "header)", key="seal.bad_key_wrap") from None
    aes = AESGCM(content_key)
    aad = header.aad()
    seg = header.segment_size + TAG_SIZE
    plain_hash = hashlib.sha256()
    plain_size = 0
    index = 0
    block = sealed.read(seg)
    while True:
        nxt = sealed.read(seg)
        last = not nxt
        if len(block) < TAG_SIZE or (not last and len(block) != seg):
            raise IntegrityError("sealed body truncated", key="seal.truncated")
        try:
            plain = aes.decrypt(segment_nonce(header.nonce_prefix, index, last), block, aad)
        except InvalidTag:
            raise IntegrityError(
                f"segment {index} fails authentication (altered, reordered or truncated)",
                key="seal.bad_segment") from None
        out.write(plain)
        plain_hash.update(plain)
        plain_size += len(plain)
        index += 1
        if last:
            break
        block = nxt
    if plain_size != manifest.plaintext_size or not hmac.compare_digest(
            plain_hash.hexdigest(), manifest.plaintext_sha256):
        raise IntegrityError("plaintext does not match the manifest", key="seal.hash_mismatch")
    return manifest


def open_sealed_to_path(sealed: Path, manifest_bytes: bytes,
                        device_key: ec.EllipticCurvePublicKey, keys: SealingPrivateKeys,
                        dest: Path) -> Manifest:
    with sealed.open("rb") as src, temp_file_for(dest) as (tmp, out):
        manifest = open_sealed(src, manifest_bytes, device_key, keys, out)
        publish_temp(tmp, out, dest)
    return manifest
