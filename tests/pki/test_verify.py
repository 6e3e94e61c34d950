from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from edge.pki import (
    CertificateRejected,
    FleetCA,
    RevocationList,
    build_csr,
    create_fleet_ca,
    generate_device_key,
    verify_device_certificate,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> FleetCA:
    return create_fleet_ca("fleet", now=NOW - timedelta(days=30))


def issue(ca: FleetCA, name: str = "kec-01", validity: timedelta | None = None
          ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = generate_device_key()
    return key, ca.issue_client_certificate(build_csr(key, name), now=NOW, validity=validity)


def test_returns_the_key_that_checks_the_devices_signatures(ca: FleetCA) -> None:
    key, cert = issue(ca)
    pub = verify_device_certificate(ca.cert, cert, "kec-01", now=NOW)
    manifest = b'{"recording": "r1"}'
    pub.verify(key.sign(manifest, ec.ECDSA(hashes.SHA256())), manifest, ec.ECDSA(hashes.SHA256()))


def test_certificate_from_another_ca_with_the_same_name_is_rejected(ca: FleetCA) -> None:
    impostor_ca = create_fleet_ca("fleet", now=NOW - timedelta(days=1))  # same subject!
    _, cert = issue(impostor_ca)
    with pytest.raises(CertificateRejected, match="not issued by the fleet CA") as e:
        verify_device_certificate(ca.cert, cert, "kec-01", now=NOW)
    assert e.value.key == "pki.cert_rejected"


def test_expired_certificate_is_rejected(ca: FleetCA) -> None:
    _, cert = issue(ca, validity=timedelta(days=1))
    assert verify_device_certificate(ca.cert, cert, "kec-01", now=NOW + timedelta(hours=23))
    with pytest.raises(CertificateRejected, match="expired"):
        verify_device_certificate(ca.cert, cert, "kec-01", now=NOW + timedelta(days=1, seconds=1))


def test_not_yet_valid_certificate_is_rejected(ca: FleetCA) -> None:
    _, cert = issue(ca)
    with pytest.raises(CertificateRejected, match="not valid before"):
        verify_device_certificate(ca.cert, cert, "kec-01", now=NOW - timedelta(hours=2))


def test_certificate_of_another_device_is_rejected(ca: FleetCA) -> None:
    _, cert = issue(ca, "kec-02")
    with pytest.raises(CertificateRejected, match="belongs to 'kec-02', not 'kec-01'"):
        verify_device_certificate(ca.cert, cert, "kec-01", now=NOW)


def test_service_certificate_is_not_a_device_certificate(ca: FleetCA) -> None:
    _, cert = issue(ca, "central-receiver")
    with pytest.raises(CertificateRejected, match="service identity, not a device"):
        verify_device_certificate(ca.cert, cert, "central-receiver", now=NOW)


def test_revoked_certificate_is_rejected_when_a_crl_is_given(ca: FleetCA, tmp_path: Path) -> None:
    _, cert = issue(ca)
    _, other = issue(ca, "kec-02")
    revoked = RevocationList(tmp_path / "revoked.json")
    revoked.revoke(cert, now=NOW)
    crl = revoked.build_crl(ca, now=NOW)
    verify_device_certificate(ca.cert, other, "kec-02", now=NOW, crl=crl)
    with pytest.raises(CertificateRejected, match="revoked"):
        verify_device_certificate(ca.cert, cert, "kec-01", now=NOW, crl=crl)


def test_crl_from_another_ca_is_not_trusted(ca: FleetCA, tmp_path: Path) -> None:
    _, cert = issue(ca)
    crl = RevocationList(tmp_path / "r.json").build_crl(create_fleet_ca("fleet"), now=NOW)
    with pytest.raises(CertificateRejected, match="CRL"):
        verify_device_certificate(ca.cert, cert, "kec-01", now=NOW, crl=crl)
