"""The device side of enrolment: the identity key is born on the device and never leaves it.

The provisioning step calls ``generate_device_key`` once, stores the key (0600) under the
state dir, and sends only ``build_csr``'s request to the CA. The same key later signs
manifests, which the central site checks with ``verify_device_certificate``.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.pki.files import generate_p256_key
from edge.pki.names import classify_identity

__all__ = ["build_csr", "build_server_csr", "generate_device_key"]


def generate_device_key() -> ec.EllipticCurvePrivateKey:
    return generate_p256_key()


def build_csr(key: ec.EllipticCurvePrivateKey, identity: str) -> x509.CertificateSigningRequest:
    """A CSR whose only subject attribute is ``CN=identity``.

    The name is checked here too, so a technician typing a bad id hears it at once rather
    than after a round trip to the CA (which checks again: the CA trusts nothing it is sent).
    """
    classify_identity(identity)  # any kind may ask; the CA decides what it signs
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def build_server_csr(key: ec.EllipticCurvePrivateKey, name: str) -> x509.CertificateSigningRequest:
    """A broker host's request. Its CN is informational only: the CA takes the broker's DNS
    names and addresses from the operator (``FleetCA.issue_server_certificate``)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
