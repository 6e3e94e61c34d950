"""The fleet PKI: one CA, device keys born on the device, client/server certificates, CRLs.

Place in the data flow: every MQTT connection to the central broker is mutual TLS with a
certificate from this CA; the broker takes the certificate's CN as the MQTT username and the
ACL (``edge/broker/edge.acl``) maps it to topics. The central site also uses the device
certificate to check manifest signatures (``verify_device_certificate``).

    device:  key = generate_device_key(); csr = build_csr(key, "kec-3171-01")
    CA:      cert = ca.issue_client_certificate(csr, expect=IdentityKind.DEVICE)
    revoke:  revoked.revoke(cert); write_crl(path, revoked.build_crl(ca)); SIGHUP broker
    watch:   crl_status(load_crl(path)).state in ("ok", "warning", "expired")
"""

from edge.pki.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CA_VALIDITY,
    CLIENT_VALIDITY,
    CLOCK_SKEW,
    SERVER_VALIDITY,
    CheckedRequest,
    FleetCA,
    check_csr,
    create_fleet_ca,
)
from edge.pki.device import build_csr, build_server_csr, generate_device_key
from edge.pki.errors import (
    CertificateRejected,
    CsrRejected,
    PkiError,
    PkiFileError,
    UnsafeIdentity,
)
from edge.pki.files import (
    generate_p256_key,
    load_certificate,
    load_certificate_pem,
    load_private_key,
    private_key_pem,
    save_certificate,
    save_private_key,
)
from edge.pki.names import (
    CLAIM_ID_RE,
    CLAIM_PREFIX,
    RESERVED_PREFIXES,
    SERVICE_IDENTITIES,
    SERVICE_PREFIX,
    IdentityKind,
    classify_identity,
    new_claim_id,
)
from edge.pki.revocation import (
    CRL_STATES,
    CRL_VALIDITY,
    CRL_WARN_BEFORE,
    REVOKED_FILE,
    CrlStatus,
    Revocation,
    RevocationList,
    crl_status,
    load_crl,
    write_crl,
)
from edge.pki.verify import (
    certificate_identity,
    verify_client_certificate,
    verify_device_certificate,
)

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CA_VALIDITY",
    "CLAIM_ID_RE",
    "CLAIM_PREFIX",
    "CLIENT_VALIDITY",
    "CLOCK_SKEW",
    "CRL_STATES",
    "CRL_VALIDITY",
    "CRL_WARN_BEFORE",
    "RESERVED_PREFIXES",
    "REVOKED_FILE",
    "SERVER_VALIDITY",
    "SERVICE_IDENTITIES",
    "SERVICE_PREFIX",
    "CertificateRejected",
    "CheckedRequest",
    "CrlStatus",
    "CsrRejected",
    "FleetCA",
    "IdentityKind",
    "PkiError",
    "PkiFileError",
    "Revocation",
    "RevocationList",
    "UnsafeIdentity",
    "build_csr",
    "build_server_csr",
    "certificate_identity",
    "check_csr",
    "classify_identity",
    "create_fleet_ca",
    "crl_status",
    "generate_device_key",
    "generate_p256_key",
    "load_certificate",
    "load_certificate_pem",
    "load_crl",
    "load_private_key",
    "new_claim_id",
    "private_key_pem",
    "save_certificate",
    "save_private_key",
    "verify_client_certificate",
    "verify_device_certificate",
    "write_crl",
]
