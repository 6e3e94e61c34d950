"""The fleet CA: one ECDSA P-256 key that vouches for every device, central service and broker.

Place in the data flow: the broker trusts exactly this CA (``cafile``), takes the CN of a
client certificate as the MQTT username, and its ACL turns that name into topics. So what the
CA signs *is* the fleet's authorisation: ``issue_client_certificate`` signs only names that
``edge.pki.names`` calls safe, copies nothing from the request but the public key and the CN,
and sets every extension itself (clientAuth only, not a CA, random serial).

Files (``save``/``load``): ``<dir>/ca.pem`` (0644) and ``<dir>/ca.key`` (0600, optionally
passphrase-encrypted), each written durably. The CA key belongs on an offline or tightly held
ops machine, never on an appliance.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.pki.errors import CsrRejected, PkiFileError
from edge.pki.files import (
    generate_p256_key,
    load_certificate,
    load_private_key,
    save_certificate,
    save_private_key,
)
from edge.pki.names import IdentityKind, classify_identity

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CA_VALIDITY",
    "CLIENT_VALIDITY",
    "CLOCK_SKEW",
    "SERVER_VALIDITY",
    "CheckedRequest",
    "FleetCA",
    "check_csr",
    "create_fleet_ca",
]

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"

# Ten years: longer than an appliance's expected service life would force a CA roll-over
# plan on day one; shorter would force it on every office mid-life.
CA_VALIDITY = timedelta(days=3650)
# Client certificates are short-lived so a lost device ages out even if nobody revokes it.
# Renewal must run well before the end (an office can be offline for weeks).
CLIENT_VALIDITY: Mapping[IdentityKind, timedelta] = MappingProxyType({
    IdentityKind.DEVICE: timedelta(days=180),
    IdentityKind.SERVICE: timedelta(days=90),
    IdentityKind.CLAIM: timedelta(days=3),  # one enrolment visit, then revoked or expired
})
# 397 days: the longest server lifetime mainstream TLS clients accept.
SERVER_VALIDITY = timedelta(days=397)
# A Pi has no RTC: until NTP answers, its clock may lag. Backdating ``not_valid_before`` keeps
# a freshly issued certificate from looking "not yet valid" to a slightly slow clock.
CLOCK_SKEW = timedelta(hours=1)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("pass an aware datetime (UTC) as now")
    return now


def _cn_of(name: x509.Name, what: str) -> str:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1:
        # Two CNs are ambiguous: Mosquitto would take one, a verifier might take another.
        raise CsrRejected(f"the {what} must carry exactly one common name (CN), "
                          f"it has {len(cns)}")
    value = cns[0].value
    if not isinstance(value, str):
        raise CsrRejected(f"the {what}'s common name is not text")
    return value


@dataclass(frozen=True)
class CheckedRequest:
    """What the CA may take from a request: the name, its kind, the public key. No more."""

    name: str
    kind: IdentityKind
    public_key: ec.EllipticCurvePublicKey


def check_csr(csr: x509.CertificateSigningRequest) -> CheckedRequest:
    """Refuse a request the CA must not sign; say who it is for and what kind of identity."""
    if not csr.is_signature_valid:
        raise CsrRejected("the request's signature does not match its key: it was altered or "
                          "built wrongly; make a new request on the device")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CsrRejected(f"the request holds a {type(key).__name__} key; fleet identities use "
                          "ECDSA P-256 (edge.pki.generate_device_key)")
    cn = _cn_of(csr.subject, "request")
    return CheckedRequest(name=cn, kind=classify_identity(cn), public_key=key)


def _ski(key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


@dataclass(frozen=True)
class FleetCA:
    """The CA certificate and its private key, loaded together."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    # -- files -------------------------------------------------------------------------
    def save(self, directory: Path, *, passphrase: bytes | None = None) -> None:
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Key first: a certificate without its key is useless, a key without its cert is
        # recoverable (the cert can be re-issued from the key).
        save_private_key(directory / CA_KEY_FILE, self.key, passphrase=passphrase)
        save_certificate(directory / CA_CERT_FILE, self.cert)

    @classmethod
    def load(cls, directory: Path, *, passphrase: bytes | None = None) -> FleetCA:
        directory = Path(directory)
        cert = load_certificate(directory / CA_CERT_FILE)
        key = load_private_key(directory / CA_KEY_FILE, passphrase)
        if cert.public_key() != key.public_key():
            raise PkiFileError(f"{directory / CA_KEY_FILE} does not belong to "
                               f"{directory / CA_CERT_FILE}; restore the matching pair")
        return cls(cert=cert, key=key)

    # -- issuing -----------------------------------------------------------------------
    def _leaf(self, cn: str, public_key: ec.EllipticCurvePublicKey, *, validity: timedelta,
              now: datetime | None, eku: x509.ObjectIdentifier) -> x509.CertificateBuilder:
        start = _now(now)
        if validity <= timedelta(0):
            raise ValueError("validity must be positive")
        not_after = min(start + validity, self.cert.not_valid_after_utc)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False,
                              key_agreement=False, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(_ski(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
        )

    def issue_client_certificate(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        expect: IdentityKind | None = None,
        validity: timedelta | None = None,
        now: datetime | None = None,
    ) -> x509.Certificate:
        """Sign a TLS client certificate (clientAuth) for the request's CN.

        ``expect`` pins the kind of identity (a device-enrolment flow passes DEVICE so a
        request for ``central-receiver`` cannot slip through it).
        """
        req = check_csr(csr)
        if expect is not None and req.kind != expect:
            raise CsrRejected(f"the request is for {req.name!r}, a {req.kind} identity, but "
                              f"this step signs only {expect} identities")
        builder = self._leaf(req.name, req.public_key,
                             validity=CLIENT_VALIDITY[req.kind] if validity is None
                             else validity, now=now,
                             eku=ExtendedKeyUsageOID.CLIENT_AUTH)
        return builder.sign(self.key, hashes.SHA256())

    def issue_server_certificate(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
        validity: timedelta = SERVER_VALIDITY,
        now: datetime | None = None,
    ) -> x509.Certificate:
        """Sign a broker's TLS server certificate (serverAuth) for the given names only.

        The names come from the operator, not from the request: a CSR cannot widen them.
        """
        if not csr.is_signature_valid:
            raise CsrRejected("the broker's request signature does not match its key")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise CsrRejected("the broker's request must hold an ECDSA P-256 key")
        dns = [d.strip().lower() for d in dns_names]
        ips = [ipaddress.ip_address(a) for a in ip_addresses]
        if not dns and not ips:
            raise ValueError("a broker certificate needs at least one DNS name or IP address")
        for d in dns:
            if not d or any(c.isspace() or c in "/@:" for c in d):
                raise CsrRejected(f"{d!r} is not a DNS name")
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(a) for a in ips]
        cn = dns[0] if dns else str(ips[0])
        builder = self._leaf(cn, key, validity=validity, now=now,
                             eku=ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256())


def create_fleet_ca(name: str = "e-KTP edge fleet CA", *, validity: timedelta = CA_VALIDITY,
                    now: datetime | None = None) -> FleetCA:
    """A new self-signed CA that may sign leaves only (pathlen 0: no sub-CAs)."""
    start = _now(now)
    key = generate_p256_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .add_extension(_ski(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return FleetCA(cert=cert, key=key)
