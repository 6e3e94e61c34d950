import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.pki import (
    CLIENT_VALIDITY,
    CsrRejected,
    FleetCA,
    IdentityKind,
    PkiFileError,
    UnsafeIdentity,
    build_csr,
    build_server_csr,
    create_fleet_ca,
    generate_device_key,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> FleetCA:
    return create_fleet_ca("test CA", now=NOW)


def csr_with_subject(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
                     *attrs: x509.NameAttribute) -> x509.CertificateSigningRequest:
    return (x509.CertificateSigningRequestBuilder().subject_name(x509.Name(list(attrs)))
            .sign(key, hashes.SHA256()))


def test_fleet_ca_is_a_p256_leaf_only_ca(ca: FleetCA) -> None:
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp256r1"
    ca.cert.verify_directly_issued_by(ca.cert)  # self-signed
    assert ca.cert.not_valid_after_utc - NOW >= timedelta(days=3000)


def test_save_and_load_keeps_the_pair_and_protects_the_key(ca: FleetCA, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca")
    assert os.stat(tmp_path / "ca" / "ca.key").st_mode & 0o777 == 0o600
    loaded = FleetCA.load(tmp_path / "ca")
    assert loaded.cert == ca.cert
    assert loaded.key.private_numbers() == ca.key.private_numbers()


def test_passphrase_protected_key_needs_the_passphrase(ca: FleetCA, tmp_path: Path) -> None:
    ca.save(tmp_path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / "ca.key").read_bytes()
    with pytest.raises(PkiFileError, match="passphrase"):
        FleetCA.load(tmp_path)
    assert FleetCA.load(tmp_path, passphrase=b"correct horse").cert == ca.cert


def test_load_refuses_a_key_that_is_not_the_certificates(ca: FleetCA, tmp_path: Path) -> None:
    ca.save(tmp_path)
    create_fleet_ca("other").save(tmp_path / "other")
    (tmp_path / "ca.key").write_bytes((tmp_path / "other" / "ca.key").read_bytes())
    with pytest.raises(PkiFileError, match="does not belong"):
        FleetCA.load(tmp_path)


def test_load_refuses_a_world_readable_key(ca: FleetCA, tmp_path: Path) -> None:
    ca.save(tmp_path)
    os.chmod(tmp_path / "ca.key", 0o644)
    with pytest.raises(PkiFileError, match="chmod 600"):
        FleetCA.load(tmp_path)


def test_device_certificate_has_cn_client_auth_and_bounded_validity(ca: FleetCA) -> None:
    key = generate_device_key()
    cert = ca.issue_client_certificate(build_csr(key, "kec-3171-01"), now=NOW)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kec-3171-01"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.public_key() == key.public_key()
    assert cert.not_valid_after_utc == NOW + CLIENT_VALIDITY[IdentityKind.DEVICE]
    assert cert.not_valid_before_utc < NOW  # backdated for a Pi whose clock lags
    cert.verify_directly_issued_by(ca.cert)


def test_validity_is_configurable_and_never_outlives_the_ca(ca: FleetCA) -> None:
    csr = build_csr(generate_device_key(), "kec-01")
    short = ca.issue_client_certificate(csr, validity=timedelta(days=7), now=NOW)
    assert short.not_valid_after_utc == NOW + timedelta(days=7)
    huge = ca.issue_client_certificate(csr, validity=timedelta(days=100_000), now=NOW)
    assert huge.not_valid_after_utc == ca.cert.not_valid_after_utc
    with pytest.raises(ValueError, match="positive"):
        ca.issue_client_certificate(csr, validity=timedelta(0), now=NOW)


def test_serials_are_random_and_distinct(ca: FleetCA) -> None:
    csr = build_csr(generate_device_key(), "kec-01")
    serials = {ca.issue_client_certificate(csr, now=NOW).serial_number for _ in range(20)}
    assert len(serials) == 20
    assert all(s.bit_length() > 64 for s in serials)


def test_claim_certificates_are_short_lived(ca: FleetCA) -> None:
    cert = ca.issue_client_certificate(build_csr(generate_device_key(), "claim-abcdefghij2345"),
                                       now=NOW)
    assert cert.not_valid_after_utc - NOW <= timedelta(days=3)


@pytest.mark.parametrize("cn", ["kec/01", "kec+01", "#", "Kec-01", "central-evil",
                                "claim-short"])
def test_csr_with_unsafe_cn_is_refused(ca: FleetCA, cn: str) -> None:
    csr = csr_with_subject(generate_device_key(), x509.NameAttribute(NameOID.COMMON_NAME, cn))
    with pytest.raises(UnsafeIdentity) as e:
        ca.issue_client_certificate(csr)
    assert isinstance(e.value, CsrRejected) and cn in e.value.message


def test_build_csr_refuses_the_bad_name_before_it_reaches_the_ca() -> None:
    with pytest.raises(UnsafeIdentity, match="kec/01"):
        build_csr(generate_device_key(), "kec/01")


def test_csr_with_two_common_names_is_refused(ca: FleetCA) -> None:
    csr = csr_with_subject(generate_device_key(),
                           x509.NameAttribute(NameOID.COMMON_NAME, "kec-01"),
                           x509.NameAttribute(NameOID.COMMON_NAME, "central-receiver"))
    with pytest.raises(CsrRejected, match="exactly one common name"):
        ca.issue_client_certificate(csr)


def test_only_the_cn_is_copied_from_the_request(ca: FleetCA) -> None:
    csr = csr_with_subject(generate_device_key(),
                           x509.NameAttribute(NameOID.COMMON_NAME, "kec-01"),
                           x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil CA"))
    cert = ca.issue_client_certificate(csr, now=NOW)
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kec-01")])


def test_tampered_csr_signature_is_refused(ca: FleetCA) -> None:
    der = bytearray(build_csr(generate_device_key(), "kec-01").public_bytes(Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the signature's s value; DER stays valid
    forged = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(CsrRejected, match="signature"):
        ca.issue_client_certificate(forged)


def test_rsa_request_is_refused(ca: FleetCA) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = csr_with_subject(key, x509.NameAttribute(NameOID.COMMON_NAME, "kec-01"))
    with pytest.raises(CsrRejected, match="P-256"):
        ca.issue_client_certificate(csr)


def test_expected_kind_stops_a_service_name_in_device_enrolment(ca: FleetCA) -> None:
    csr = build_csr(generate_device_key(), "central-receiver")
    with pytest.raises(CsrRejected, match="signs only device"):
        ca.issue_client_certificate(csr, expect=IdentityKind.DEVICE)
    assert ca.issue_client_certificate(csr, expect=IdentityKind.SERVICE)


def test_server_certificate_has_the_operators_names_and_server_auth(ca: FleetCA) -> None:
    csr = build_server_csr(generate_device_key(), "whatever-the-host-asked")
    cert = ca.issue_server_certificate(csr, dns_names=["mqtt.central.example"],
                                       ip_addresses=["10.20.0.5"], now=NOW)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mqtt.central.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.20.0.5"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc - NOW == timedelta(days=397)


def test_server_certificate_needs_a_name(ca: FleetCA) -> None:
    with pytest.raises(ValueError, match="at least one"):
        ca.issue_server_certificate(build_server_csr(generate_device_key(), "x"))
