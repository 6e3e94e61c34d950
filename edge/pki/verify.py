"""Checking a certificate someone hands us against the fleet CA.

Place in the data flow: the central site receives a device's certificate with each sealed
recording's manifest and must know the manifest was signed by *that* device's key.
``verify_device_certificate`` answers with the public key to check the signature with, or a
``CertificateRejected`` naming what is wrong (another CA, expired, another device, revoked).
The broker does the same checks for TLS; this is for signatures made outside TLS.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.pki.errors import CertificateRejected, UnsafeIdentity
from edge.pki.names import IdentityKind, classify_identity

__all__ = ["certificate_identity", "verify_client_certificate", "verify_device_certificate"]


def certificate_identity(cert: x509.Certificate) -> str:
    """The one CN of a fleet certificate (the MQTT username the broker will use)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or not isinstance(cns[0].value, str):
        raise CertificateRejected("the certificate must carry exactly one common name (CN)")
    return cns[0].value


def verify_client_certificate(
    ca_cert: x509.Certificate,
    cert: x509.Certificate,
    identity: str,
    *,
    kind: IdentityKind | None = None,
    now: datetime | None = None,
    crl: x509.CertificateRevocationList | None = None,
) -> ec.EllipticCurvePublicKey:
    """Prove ``cert`` is a current fleet client certificate for ``identity``.

    ``crl``, when given, must be signed by the same CA; a listed serial is refused. Whether
    a stale CRL is acceptable is the caller's policy (see ``crl_status``), not checked here.
    """
    at = datetime.now(UTC) if now is None else now
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise CertificateRejected(
            f"the certificate for {identity!r} was not issued by the fleet CA "
            f"({ca_cert.subject.rfc4514_string()}): issuer is "
            f"{cert.issuer.rfc4514_string()!r}"
        ) from e
    if not (ca_cert.not_valid_before_utc <= at <= ca_cert.not_valid_after_utc):
        raise CertificateRejected("the fleet CA certificate itself is outside its validity")
    if at < cert.not_valid_before_utc:
        raise CertificateRejected(
            f"the certificate for {identity!r} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check this machine's clock")
    if at > cert.not_valid_after_utc:
        raise CertificateRejected(
            f"the certificate for {identity!r} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; the device must renew it")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            raise CertificateRejected("a CA certificate is not a client identity")
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as e:
        raise CertificateRejected("the certificate has no extended key usage; fleet client "
                                  "certificates carry clientAuth") from e
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise CertificateRejected("the certificate is not a client certificate (no clientAuth)")
    name = certificate_identity(cert)
    if name != identity:
        raise CertificateRejected(f"the certificate belongs to {name!r}, not {identity!r}")
    try:
        actual_kind = classify_identity(name)
    except UnsafeIdentity as e:
        raise CertificateRejected(f"the certificate's name is unsafe: {e.message}") from e
    if kind is not None and actual_kind != kind:
        raise CertificateRejected(f"{name!r} is a {actual_kind} identity, not a {kind}")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CertificateRejected("the certificate's key is not ECDSA P-256")
    if crl is not None:
        ca_key = ca_cert.public_key()
        if (crl.issuer != ca_cert.subject or not isinstance(ca_key, ec.EllipticCurvePublicKey)
                or not crl.is_signature_valid(ca_key)):
            raise CertificateRejected("the CRL given was not signed by the fleet CA")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise CertificateRejected(f"the certificate for {identity!r} "
                                      f"(serial {cert.serial_number:x}) has been revoked")
    return key


def verify_device_certificate(
    ca_cert: x509.Certificate,
    cert: x509.Certificate,
    device_id: str,
    *,
    now: datetime | None = None,
    crl: x509.CertificateRevocationList | None = None,
) -> ec.EllipticCurvePublicKey:
    """The public key to check ``device_id``'s manifest signatures with, if ``cert`` is a
    current fleet certificate for that device (not a service's, not a claim's)."""
    return verify_client_certificate(ca_cert, cert, device_id, kind=IdentityKind.DEVICE,
                                     now=now, crl=crl)
