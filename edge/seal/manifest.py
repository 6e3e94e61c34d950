"""The manifest that travels with each sealed file, signed with the device's identity key.

It names what was sealed (device, recording id, sequence, sizes, SHA-256 of the plaintext and
of the sealed file, suite) and the workstation metadata, so the central site can tell that a
sealed file is the one this device took in, unaltered, and refuse a file paired with another
recording's manifest. Wire form (UTF-8 JSON, one object):

    {"alg": "ES256", "manifest": {...canonical...}, "sig": "<base64 DER ECDSA signature>"}

The signature covers the canonical JSON of "manifest": sorted keys, no whitespace, ASCII.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.errors import ConfigError, IntegrityError

__all__ = [
    "MANIFEST_VERSION",
    "Manifest",
    "SignedManifest",
    "canonical_json",
    "load_device_signing_key",
    "sign_manifest",
    "verify_manifest",
]

MANIFEST_VERSION = 1
_META_KEYS = ("workstation", "operator", "captured_at", "content_type")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class Manifest:
    device_id: str
    recording_id: str
    seq: int
    plaintext_size: int
    plaintext_sha256: str
    sealed_size: int
    sealed_sha256: str
    suite: str
    segment_size: int
    stored_at: str  # device wall clock (ISO 8601); informative only: a Pi has no RTC
    metadata: dict[str, str] = field(default_factory=dict)
    v: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        if not isinstance(d, dict):
            raise IntegrityError("manifest is not an object", key="manifest.malformed")
        if d.get("v") != MANIFEST_VERSION:
            raise IntegrityError(f"manifest version {d.get('v')!r} not supported",
                                 key="manifest.bad_version")
        try:
            m = cls(**d)
        except TypeError as e:
            raise IntegrityError(f"manifest fields wrong: {e}", key="manifest.malformed") from None
        for name in ("device_id", "recording_id", "plaintext_sha256", "sealed_sha256", "suite",
                     "stored_at"):
            if not isinstance(getattr(m, name), str):
                raise IntegrityError(f"manifest {name} must be text", key="manifest.malformed")
        for name in ("seq", "plaintext_size", "sealed_size", "segment_size"):
            v = getattr(m, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise IntegrityError(f"manifest {name} must be a count", key="manifest.malformed")
        if not isinstance(m.metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in m.metadata.items()
        ):
            raise IntegrityError("manifest metadata must map text to text",
                                 key="manifest.malformed")
        return m


@dataclass(frozen=True)
class SignedManifest:
    manifest: Manifest
    signature: bytes

    def to_bytes(self) -> bytes:
        return canonical_json({"alg": "ES256", "manifest": self.manifest.to_dict(),
                               "sig": base64.b64encode(self.signature).decode()})


def load_device_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"{path}: device identity key not found: provision the device "
                          "(edge provision) or set [identity] key") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: not a PEM private key ({e}): re-provision the device") \
            from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path}: device identity key must be ECDSA P-256")
    return key


def sign_manifest(manifest: Manifest, key: ec.EllipticCurvePrivateKey) -> SignedManifest:
    sig = key.sign(canonical_json(manifest.to_dict()), ec.ECDSA(hashes.SHA256()))
    return SignedManifest(manifest, sig)


def verify_manifest(data: bytes, public_key: ec.EllipticCurvePublicKey) -> Manifest:
    """Parse and verify a signed manifest; the result is only returned if the signature holds."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise IntegrityError("manifest is not JSON", key="manifest.malformed") from None
    if not isinstance(doc, dict) or doc.get("alg") != "ES256" or not isinstance(doc.get("sig"),
                                                                                  str):
        raise IntegrityError("manifest envelope malformed (need alg ES256 and sig)",
                             key="manifest.malformed")
    try:
        sig = base64.b64decode(doc["sig"], validate=True)
    except ValueError:
        raise IntegrityError("manifest signature is not base64", key="manifest.malformed") \
            from None
    body = doc.get("manifest")
    try:
        public_key.verify(sig, canonical_json(body), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise IntegrityError("manifest signature does not verify with the device's key",
                             key="manifest.bad_signature") from None
    return Manifest.from_dict(body)
