"""The provisioning bundle: what a blank Pi needs to know about its fleet, for one enrolment.

Place in the data flow: ``edge-central enrol`` writes one bundle per code; the technician
brings it to the Pi (USB stick, the SD card's boot partition, or ``--bundle``), and
``edge provision CODE`` finds the bundle whose claim id the code derives, checks it, and
uses it to reach the claim channel. The bundle is not secret: it holds public keys and
certificates only (the claim key is derived from the code, ``edge.provision.code``).

    {"format": "edge-provisioning-bundle/1",
     "body": {claim_id, device_id, office, broker {host, port}, ca_certificate,
              claim_certificate, central_sealing_public_key, kem, receipt_public_key,
              issued_at, expires_at, apn, workstations},
     "mac": HMAC-SHA256(key derived from the code, canonical body),
     "signature": ECDSA-P256-SHA256 by the fleet CA over the canonical body}

Two seals, two readers. The MAC is what a blank device can check: it knows nothing yet but
the code the technician typed, so the code is the trust anchor and the MAC binds the fleet
CA, the broker address and the central keys in the bundle to it (someone who swapped the CA
or the sealing key in the file would need the code). The CA signature lets anyone who
already trusts the fleet CA (central tooling, an image that pins the CA fingerprint) check
the same bytes without the code. Canonical body = JSON, sorted keys, no spaces, ASCII.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge.config import DEVICE_ID_RE
from edge.pki import FleetCA, PkiError, certificate_identity
from edge.provision.code import EnrolmentCode
from edge.provision.errors import BundleError
from edge.seal.keys import PUBLIC_FORMAT

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_SUFFIX",
    "Bundle",
    "bundle_file_name",
    "ca_fingerprint",
    "canonical_json",
    "find_bundle",
    "open_bundle",
    "seal_bundle",
]

BUNDLE_FORMAT = "edge-provisioning-bundle/1"
BUNDLE_SUFFIX = ".edge-bundle.json"


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def ca_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the CA certificate (DER), hex: what an image may pin."""
    return cert.fingerprint(hashes.SHA256()).hex()


def bundle_file_name(device_id: str, claim_id: str) -> str:
    return f"{device_id}.{claim_id}{BUNDLE_SUFFIX}"


@dataclass(frozen=True)
class Bundle:
    claim_id: str
    device_id: str
    office: str
    broker_host: str
    broker_port: int
    ca_pem: bytes
    claim_cert_pem: bytes
    sealing_public_json: bytes   # an edge-sealing-public/1 document (edge.seal.keys)
    kem: str
    receipt_public_pem: bytes    # Ed25519 SubjectPublicKeyInfo PEM
    issued_at: datetime
    expires_at: datetime
    apn: str = ""
    workstations: int = 2

    @property
    def ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_pem)

    @property
    def claim_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.claim_cert_pem)

    def body(self) -> dict[str, Any]:
        return {
            "claim_id": self.claim_id,
            "device_id": self.device_id,
            "office": self.office,
            "broker": {"host": self.broker_host, "port": self.broker_port},
            "ca_certificate": self.ca_pem.decode("ascii"),
            "claim_certificate": self.claim_cert_pem.decode("ascii"),
            "central_sealing_public_key": self.sealing_public_json.decode("ascii"),
            "kem": self.kem,
            "receipt_public_key": self.receipt_public_pem.decode("ascii"),
            "issued_at": self.issued_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "apn": self.apn,
            "workstations": self.workstations,
        }

    @classmethod
    def from_body(cls, body: Any) -> Bundle:
        try:
            broker = body["broker"]
            bundle = cls(
                claim_id=str(body["claim_id"]),
                device_id=str(body["device_id"]),
                office=str(body["office"]),
                broker_host=str(broker["host"]),
                broker_port=int(broker["port"]),
                ca_pem=str(body["ca_certificate"]).encode("ascii"),
                claim_cert_pem=str(body["claim_certificate"]).encode("ascii"),
                sealing_public_json=str(body["central_sealing_public_key"]).encode("ascii"),
                kem=str(body["kem"]),
                receipt_public_pem=str(body["receipt_public_key"]).encode("ascii"),
                issued_at=datetime.fromisoformat(body["issued_at"]),
                expires_at=datetime.fromisoformat(body["expires_at"]),
                apn=str(body.get("apn", "")),
                workstations=int(body.get("workstations", 2)),
            )
        except (KeyError, TypeError, ValueError, UnicodeEncodeError) as e:
            raise BundleError(f"the provisioning bundle is incomplete or damaged ({e!r}); "
                              "ask central ops to issue it again") from None
        if not DEVICE_ID_RE.match(bundle.device_id):
            raise BundleError(f"the bundle names device {bundle.device_id!r}, not a valid id")
        if not 0 < bundle.broker_port < 65536:
            raise BundleError(f"the bundle names broker port {bundle.broker_port}")
        try:
            sealing = json.loads(bundle.sealing_public_json)
            kems = sealing["kems"]
            if sealing.get("format") != PUBLIC_FORMAT or bundle.kem not in kems:
                raise ValueError(f"no {bundle.kem!r} key in a {PUBLIC_FORMAT} document")
        except (ValueError, KeyError, TypeError) as e:
            raise BundleError(f"the bundle's central sealing key is unusable ({e}); ask "
                              "central ops to issue the bundle again") from None
        return bundle

    def receipt_public_key(self) -> ed25519.Ed25519PublicKey:
        key = serialization.load_pem_public_key(self.receipt_public_pem)
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise BundleError("the bundle's receipt key is not an Ed25519 public key")
        return key


def seal_bundle(bundle: Bundle, *, ca: FleetCA, code: EnrolmentCode) -> bytes:
    """The bundle file's bytes: body, MAC under the code, CA signature."""
    body = bundle.body()
    data = canonical_json(body)
    mac = hmac.new(code.bundle_mac_key(), data, hashlib.sha256).digest()
    signature = ca.key.sign(data, ec.ECDSA(hashes.SHA256()))
    doc = {"format": BUNDLE_FORMAT, "body": body,
           "mac": base64.b64encode(mac).decode(),
           "signature": base64.b64encode(signature).decode()}
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def open_bundle(data: bytes, code: EnrolmentCode, *, source: str = "bundle",
                pinned_ca_sha256: str | None = None) -> Bundle:
    """Check a bundle against the code (and a pinned CA, if the image has one); return it.

    Checks, in order: it is a bundle; its MAC verifies under this code (else it belongs to
    another code or was altered); the CA's signature verifies; the CA is the pinned one (if
    given); the claim certificate was issued by that CA for this code's claim id and key.
    """
    try:
        doc = json.loads(data)
        body = doc["body"]
        mac = base64.b64decode(doc["mac"], validate=True)
        signature = base64.b64decode(doc["signature"], validate=True)
        if doc.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise BundleError(f"{source} is not an edge provisioning bundle ({e}); use the "
                          f"*{BUNDLE_SUFFIX} file that came with the code") from None
    signed = canonical_json(body)
    expected = hmac.new(code.bundle_mac_key(), signed, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise BundleError(f"{source} was not issued for this code (or it was altered): check "
                          "that the code and the bundle belong to the same device")
    bundle = Bundle.from_body(body)
    if bundle.claim_id != code.claim_id:
        raise BundleError(f"{source} is for another code; use the bundle issued with it")
    try:
        ca_cert = bundle.ca_cert
        ca_key = ca_cert.public_key()
        if not isinstance(ca_key, ec.EllipticCurvePublicKey):
            raise BundleError(f"{source}: the fleet CA key is not ECDSA")
        ca_key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature) as e:
        raise BundleError(f"{source}: the fleet CA's signature does not verify ({e!r}); "
                          "ask central ops to issue the bundle again") from None
    if pinned_ca_sha256 is not None and ca_fingerprint(ca_cert) != pinned_ca_sha256.lower():
        raise BundleError(f"{source} names a fleet CA ({ca_fingerprint(ca_cert)[:16]}...) "
                          "that this image does not trust: it is not from our central site")
    # The claim certificate's times are the broker's business (its clock is right; a blank
    # Pi's clock may be weeks behind until NTP answers): here only who issued it, to whom.
    try:
        claim = bundle.claim_cert
        claim.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise BundleError(f"{source}: the claim certificate was not issued by the bundle's "
                          f"fleet CA ({e!r})") from None
    try:
        name = certificate_identity(claim)
    except PkiError as e:
        raise BundleError(f"{source}: the claim certificate is not usable: {e.message}") from e
    if name != code.claim_id or claim.public_key() != code.claim_key().public_key():
        raise BundleError(f"{source}: the claim certificate is not for this code")
    return bundle


def find_bundle(code: EnrolmentCode, places: list[Path]) -> Path | None:
    """The first ``*<claim id>*.edge-bundle.json`` in ``places`` (files or folders)."""
    for place in places:
        if place.is_file():
            return place
        if place.is_dir():
            for candidate in sorted(place.glob(f"*{code.claim_id}*{BUNDLE_SUFFIX}")):
                if candidate.is_file():
                    return candidate
    return None
