from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from edge.pki import (
    CRL_WARN_BEFORE,
    FleetCA,
    PkiFileError,
    RevocationList,
    build_csr,
    create_fleet_ca,
    crl_status,
    generate_device_key,
    load_crl,
    write_crl,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> FleetCA:
    return create_fleet_ca("fleet", now=NOW - timedelta(days=1))


def cert_for(ca: FleetCA, name: str, days: int = 180) -> x509.Certificate:
    return ca.issue_client_certificate(build_csr(generate_device_key(), name), now=NOW,
                                       validity=timedelta(days=days))


def test_revocations_and_crl_number_survive_a_reload(ca: FleetCA, tmp_path: Path) -> None:
    path = tmp_path / "revoked.json"
    lost = cert_for(ca, "kec-01")
    rl = RevocationList(path)
    rl.revoke(lost, reason=x509.ReasonFlags.key_compromise, now=NOW)
    first = rl.build_crl(ca, now=NOW)
    again = RevocationList(path)
    assert again.is_revoked(lost.serial_number)
    assert again.entries[0].identity == "kec-01"
    second = again.build_crl(ca, now=NOW)
    number = x509.CRLNumber
    assert (second.extensions.get_extension_for_class(number).value.crl_number
            == first.extensions.get_extension_for_class(number).value.crl_number + 1)


def test_crl_lists_revoked_serials_and_is_signed_by_the_ca(ca: FleetCA, tmp_path: Path) -> None:
    lost, kept = cert_for(ca, "kec-01"), cert_for(ca, "kec-02")
    rl = RevocationList(tmp_path / "r.json")
    rl.revoke(lost, now=NOW)
    write_crl(tmp_path / "crl.pem", rl.build_crl(ca, now=NOW))
    crl = load_crl(tmp_path / "crl.pem")
    assert crl.is_signature_valid(ca.key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(lost.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.serial_number) is None
    assert crl.next_update_utc == NOW + timedelta(days=14)


def test_expired_certificates_leave_the_crl_but_not_the_record(ca: FleetCA,
                                                               tmp_path: Path) -> None:
    short = cert_for(ca, "kec-01", days=2)
    rl = RevocationList(tmp_path / "r.json")
    rl.revoke(short, now=NOW)
    later = rl.build_crl(ca, now=NOW + timedelta(days=3))
    assert later.get_revoked_certificate_by_serial_number(short.serial_number) is None
    assert rl.is_revoked(short.serial_number)


def test_damaged_revocation_file_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('{"crl_number": 3, "revoked": [{"serial": "zz"}]}')
    with pytest.raises(PkiFileError, match="damaged"):
        RevocationList(tmp_path / "r.json")


@pytest.mark.parametrize("after,state", [
    (timedelta(0), "ok"),
    (timedelta(days=14) - CRL_WARN_BEFORE - timedelta(minutes=1), "ok"),
    (timedelta(days=14) - CRL_WARN_BEFORE, "warning"),
    (timedelta(days=13, hours=23), "warning"),
    (timedelta(days=14), "expired"),
    (timedelta(days=40), "expired"),
])
def test_crl_expiry_is_reported_well_before(ca: FleetCA, tmp_path: Path,
                                            after: timedelta, state: str) -> None:
    crl = RevocationList(tmp_path / "r.json").build_crl(ca, now=NOW)
    status = crl_status(crl, now=NOW + after)
    assert status.state == state
    assert status.next_update == NOW + timedelta(days=14)
    assert status.ok == (state == "ok")
    if state != "ok":
        assert "every device" in status.message and "SIGHUP" in status.message


def test_warning_threshold_is_configurable(ca: FleetCA, tmp_path: Path) -> None:
    crl = RevocationList(tmp_path / "r.json").build_crl(ca, now=NOW)
    assert crl_status(crl, now=NOW, warn_before=timedelta(days=15)).state == "warning"
