"""What travels on the claim channel, and in the offline request and answer files.

Place in the data flow: the device sends one ``EnrolRequest`` (its identity CSR and its LAN
intake server CSR) on ``edge/claim/<claim>/up``; the enrolment service answers one
``EnrolAnswer`` on ``edge/claim/<claim>/down``: the two certificates, or a refusal with a
stable reason key (``enrol.code_used``, ``enrol.code_expired``, ...) and a sentence.

Offline, the same request is a file the technician carries to central: it carries the claim
id and a signature by the claim key (derived from the code), because no TLS session
vouches for it. The answer file carries the certificates back. JSON throughout, UTF-8.

Nothing here is secret: a CSR and a certificate hold public keys only. The device's private
keys never leave it.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.pki.names import CLAIM_ID_RE
from edge.provision.bundle import canonical_json
from edge.provision.errors import ProvisionError

__all__ = [
    "ANSWER_FILE_FORMAT",
    "REQUEST_FILE_FORMAT",
    "EnrolAnswer",
    "EnrolRequest",
    "MessageError",
    "claim_down_topic",
    "claim_id_from_topic",
    "claim_up_topic",
    "key_fingerprint",
    "verify_file_signature",
]

REQUEST_FILE_FORMAT = "edge-enrol-request/1"
ANSWER_FILE_FORMAT = "edge-enrol-answer/1"
_VERSION = 1
_TOPIC_RE = re.compile(r"^edge/claim/([^/]+)/up$")
MAX_MESSAGE_BYTES = 64 * 1024


class MessageError(ProvisionError, ValueError):
    """A claim-channel message or request/answer file that cannot be read."""

    key = "enrol.bad_message"


def claim_up_topic(claim_id: str) -> str:
    return f"edge/claim/{claim_id}/up"


def claim_down_topic(claim_id: str) -> str:
    return f"edge/claim/{claim_id}/down"


def claim_id_from_topic(topic: str) -> str | None:
    m = _TOPIC_RE.match(topic)
    if m is None or not CLAIM_ID_RE.match(m.group(1)):
        return None
    return m.group(1)


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the public key (SubjectPublicKeyInfo DER), hex."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    return h.finalize().hex()


def _load(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(f"the {what} is {len(data)} bytes, more than any enrolment "
                           f"{what} ({MAX_MESSAGE_BYTES})")
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise MessageError(f"the {what} is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise MessageError(f"the {what} is not a JSON object")
    return doc


def _csr(text: Any, what: str) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(str(text).encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        raise MessageError(f"the {what} is not a PEM certificate request ({e})") from None


def _cert(text: Any, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(str(text).encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        raise MessageError(f"the {what} is not a PEM certificate ({e})") from None


def _pem(obj: x509.Certificate | x509.CertificateSigningRequest) -> str:
    return obj.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True)
class EnrolRequest:
    """The device's request: its identity (clientAuth) CSR and its intake (serverAuth) CSR."""

    request_id: str
    device_csr: x509.CertificateSigningRequest
    intake_csr: x509.CertificateSigningRequest

    def _fields(self) -> dict[str, Any]:
        return {"v": _VERSION, "type": "enrol", "request_id": self.request_id,
                "device_csr": _pem(self.device_csr), "intake_csr": _pem(self.intake_csr)}

    def encode(self) -> bytes:
        return canonical_json(self._fields())

    @classmethod
    def decode(cls, data: bytes) -> EnrolRequest:
        doc = _load(data, "request")
        if doc.get("v") != _VERSION or doc.get("type") != "enrol":
            raise MessageError(f"unknown request version/type {doc.get('v')!r}/"
                               f"{doc.get('type')!r}: the device runs another edge version")
        rid = doc.get("request_id")
        if not isinstance(rid, str) or not re.fullmatch(r"[0-9a-f]{8,64}", rid):
            raise MessageError("the request has no usable request_id")
        return cls(rid, _csr(doc.get("device_csr"), "device CSR"),
                   _csr(doc.get("intake_csr"), "intake CSR"))

    # -- the offline file: the same fields, the claim id, a signature by the claim key --
    def encode_file(self, claim_id: str, device_id: str,
                    claim_key: ec.EllipticCurvePrivateKey) -> bytes:
        fields = {**self._fields(), "claim_id": claim_id, "device_id": device_id}
        sig = claim_key.sign(canonical_json(fields), ec.ECDSA(hashes.SHA256()))
        doc = {"format": REQUEST_FILE_FORMAT, "fields": fields,
               "signature": base64.b64encode(sig).decode()}
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode_file(cls, data: bytes) -> tuple[str, bytes, bytes, EnrolRequest]:
        """(claim id, signed bytes, signature, request): the caller checks the signature
        against the claim certificate it issued (``verify_file_signature``)."""
        doc = _load(data, "request file")
        if doc.get("format") != REQUEST_FILE_FORMAT or not isinstance(doc.get("fields"), dict):
            raise MessageError(f"not an enrolment request file ({REQUEST_FILE_FORMAT})")
        fields = doc["fields"]
        claim_id = fields.get("claim_id")
        if not isinstance(claim_id, str) or not CLAIM_ID_RE.match(claim_id):
            raise MessageError("the request file names no valid claim id")
        try:
            sig = base64.b64decode(str(doc.get("signature")), validate=True)
        except ValueError:
            raise MessageError("the request file's signature is not base64") from None
        request = cls.decode(canonical_json({k: v for k, v in fields.items()
                                             if k not in ("claim_id", "device_id")}))
        return claim_id, canonical_json(fields), sig, request


def verify_file_signature(public_key: ec.EllipticCurvePublicKey, signed: bytes,
                          signature: bytes) -> bool:
    try:
        public_key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class EnrolAnswer:
    """Certificates for the request, or a refusal (``reason`` = stable key)."""

    request_id: str
    device_cert: x509.Certificate | None = None
    intake_cert: x509.Certificate | None = None
    reason: str | None = None
    message: str = ""

    @property
    def refused(self) -> bool:
        return self.reason is not None

    def _fields(self) -> dict[str, Any]:
        if self.reason is not None:
            return {"v": _VERSION, "request_id": self.request_id, "status": "refused",
                    "reason": self.reason, "message": self.message}
        if self.device_cert is None or self.intake_cert is None:
            raise ValueError("an answer holds both certificates or a refusal")
        return {"v": _VERSION, "request_id": self.request_id, "status": "issued",
                "device_certificate": _pem(self.device_cert),
                "intake_certificate": _pem(self.intake_cert)}

    def encode(self) -> bytes:
        return canonical_json(self._fields())

    @classmethod
    def _from(cls, doc: dict[str, Any]) -> EnrolAnswer:
        if doc.get("v") != _VERSION:
            raise MessageError(f"unknown answer version {doc.get('v')!r}")
        rid = str(doc.get("request_id", ""))
        if doc.get("status") == "refused":
            return cls(rid, reason=str(doc.get("reason") or "enrol.refused"),
                       message=str(doc.get("message", "")))
        if doc.get("status") != "issued":
            raise MessageError(f"unknown answer status {doc.get('status')!r}")
        return cls(rid, device_cert=_cert(doc.get("device_certificate"), "device certificate"),
                   intake_cert=_cert(doc.get("intake_certificate"), "intake certificate"))

    @classmethod
    def decode(cls, data: bytes) -> EnrolAnswer:
        return cls._from(_load(data, "answer"))

    def encode_file(self, claim_id: str) -> bytes:
        doc = {"format": ANSWER_FILE_FORMAT, "claim_id": claim_id, **self._fields()}
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode_file(cls, data: bytes) -> tuple[str, EnrolAnswer]:
        doc = _load(data, "answer file")
        if doc.get("format") != ANSWER_FILE_FORMAT:
            raise MessageError(f"not an enrolment answer file ({ANSWER_FILE_FORMAT}); use the "
                               "file edge-central sign-csr wrote")
        return str(doc.get("claim_id", "")), cls._from(doc)
