"""The receiver's two checks: an offered manifest, and a fully reassembled recording.

Place in the data flow: the custody ``Receiver`` asks for them (``CheckManifest``,
``VerifyRecording``, docs/custody-protocol.md §8) and the adapter (receiver_app.py) answers
with what these functions return. Neither decrypts anything: the central site checks
signatures and hashes on arrival and decrypts only on ``edge-central open``.

Keys in rejections are stable (``manifest.unknown_device``, ``manifest.device_revoked``,
``manifest.bad_certificate``, ``manifest.bad_signature``, ``manifest.malformed``,
``seal.manifest_mismatch``, ...) and go to the device in the REJECT message and to ops logs;
``hash_mismatch`` alone means "the bytes are wrong: discard them and ask again".
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re

from edge.central.devices import DeviceDirectory, DeviceRejected
from edge.central.store import CentralStore
from edge.custody.receiver import (
    ManifestClaims,
    ManifestRejected,
    VerifyRecording,
    VerifyResult,
)
from edge.errors import IntegrityError
from edge.seal.format import Header
from edge.seal.manifest import Manifest, verify_manifest

__all__ = ["check_manifest", "verify_recording"]

_READ = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def _verified_manifest(devices: DeviceDirectory, device_id: str,
                       manifest: bytes) -> tuple[Manifest, bytes]:
    """The manifest checked with the certificate of ``device_id`` (the topic's device), and
    that certificate's PEM. Raises ``IntegrityError`` with the rejection key."""
    signer = devices.signer(device_id)
    m = verify_manifest(manifest, signer.public_key)
    if not _HEX64.match(m.sealed_sha256):
        raise IntegrityError("manifest sealed_sha256 is not 64 lowercase hex digits",
                             key="manifest.malformed")
    return m, signer.cert_pem


def check_manifest(devices: DeviceDirectory, device_id: str,
                   manifest: bytes) -> ManifestClaims | ManifestRejected:
    """Answer to ``CheckManifest``: the claims of a validly signed manifest. The machine
    compares them with the topic's device and the offer."""
    try:
        m, _ = _verified_manifest(devices, device_id, manifest)
    except DeviceRejected as e:
        return ManifestRejected(e.key, e.message)
    except IntegrityError as e:
        return ManifestRejected(e.key, f"{e.message} (device {device_id})")
    return ManifestClaims(m.device_id, m.recording_id, m.sealed_size,
                          bytes.fromhex(m.sealed_sha256))


def verify_recording(store: CentralStore, devices: DeviceDirectory,
                     action: VerifyRecording) -> tuple[VerifyResult, bytes | None]:
    """Answer to ``VerifyRecording`` and, when it passes, the signer's certificate (PEM) to
    keep with the committed recording. Streams the file: memory stays ~1 MiB."""
    d, rid = action.device_id, action.recording_id
    f = store.open_generation(d, rid, action.generation)
    if f is None:
        return VerifyResult(False, "hash_mismatch",
                            f"generation {action.generation} is no longer current or its "
                            "bytes are missing"), None
    digest = hashlib.sha256()
    size = 0
    with f:
        first = f.read(_READ)
        block = first
        while block:
            digest.update(block)
            size += len(block)
            block = f.read(_READ)
    if size != action.sealed_size or not hmac.compare_digest(digest.digest(),
                                                             action.sealed_sha256):
        return VerifyResult(False, "hash_mismatch",
                            f"reassembled {size} bytes with SHA-256 {digest.hexdigest()[:16]}…; "
                            f"the offer says {action.sealed_size} bytes, "
                            f"{action.sealed_sha256.hex()[:16]}…"), None
    try:
        m, cert_pem = _verified_manifest(devices, d, action.manifest)
        if m.device_id != d:
            raise IntegrityError(f"manifest is for device {m.device_id!r}, sent by {d!r}",
                                 key="offer.wrong_device")
        if (m.recording_id, m.sealed_size, m.sealed_sha256) != (
                rid, action.sealed_size, action.sealed_sha256.hex()):
            raise IntegrityError("manifest's recording id, size or SHA-256 differ from the "
                                 "offer's", key="offer.manifest_mismatch")
        header = Header.decode_from(io.BytesIO(first).read)
        if header.recording_id != m.recording_id:
            raise IntegrityError(f"sealed header names recording {header.recording_id!r}, the "
                                 f"manifest {m.recording_id!r}", key="seal.manifest_mismatch")
        if not m.suite.startswith(header.suite.name + "/"):
            raise IntegrityError(f"sealed header suite {header.suite.name!r} differs from the "
                                 f"manifest's {m.suite!r}", key="seal.manifest_mismatch")
    except IntegrityError as e:
        return VerifyResult(False, e.key, e.message), None
    return VerifyResult(True), cert_pem
