"""The receiver's checks with real keys: device certificates from a fleet CA (and CRL), real
sealed files and signed manifests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from edge.central.checks import check_manifest, verify_recording
from edge.central.devices import DeviceDirectory, DeviceRejected, signer_from_pem
from edge.central.store import CentralStore
from edge.custody.receiver import ManifestClaims, ManifestRejected, OfferRecord, VerifyRecording
from edge.errors import ConfigError
from edge.pki import (
    RevocationList,
    build_csr,
    create_fleet_ca,
    generate_device_key,
    save_certificate,
    write_crl,
)
from tests.central.helpers import Fleet, Sealed, plaintext, seal

D = "kec-3171-01"


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet.create(tmp_path / "pki")


def directory(fleet: Fleet, crl: Path | None = None) -> DeviceDirectory:
    return DeviceDirectory(fleet.certs_dir, fleet.ca.cert, crl)


def test_valid_manifest_gives_its_claims(fleet: Fleet) -> None:
    key = fleet.enrol(D)
    rec = seal(D, "nik-1", plaintext(1000), key)
    claims = check_manifest(directory(fleet), D, rec.manifest)
    assert claims == ManifestClaims(D, "nik-1", len(rec.sealed), rec.sha256)


def test_claims_for_another_device_are_passed_on_for_the_machine_to_refuse(
        fleet: Fleet) -> None:
    """Signed by D's own key but naming another device: the machine says wrong_device."""
    key = fleet.enrol(D)
    rec = seal(D, "nik-1", plaintext(10), key, claim_device="kec-9999-01")
    claims = check_manifest(directory(fleet), D, rec.manifest)
    assert isinstance(claims, ManifestClaims) and claims.device_id == "kec-9999-01"


def test_manifest_signed_by_another_device_fails_the_signature(fleet: Fleet) -> None:
    fleet.enrol(D)
    other = fleet.enrol("kec-3171-02")
    rec = seal("kec-3171-02", "nik-1", plaintext(10), other, claim_device=D)
    result = check_manifest(directory(fleet), D, rec.manifest)
    assert isinstance(result, ManifestRejected) and result.key == "manifest.bad_signature"


def test_unknown_device_is_refused(fleet: Fleet) -> None:
    rec = seal(D, "nik-1", plaintext(10), generate_device_key())
    result = check_manifest(directory(fleet), D, rec.manifest)
    assert isinstance(result, ManifestRejected) and result.key == "manifest.unknown_device"


def test_revoked_device_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    key = fleet.enrol(D)
    revoked = RevocationList(tmp_path / "revoked.json")
    crl_path = tmp_path / "crl.pem"
    write_crl(crl_path, revoked.build_crl(fleet.ca))
    dirs = directory(fleet, crl_path)
    rec = seal(D, "nik-1", plaintext(10), key)
    assert isinstance(check_manifest(dirs, D, rec.manifest), ManifestClaims)
    cert = x509.load_pem_x509_certificate((fleet.certs_dir / f"{D}.crt").read_bytes())
    revoked.revoke(cert)
    write_crl(crl_path, revoked.build_crl(fleet.ca))      # picked up without a restart
    result = check_manifest(dirs, D, rec.manifest)
    assert isinstance(result, ManifestRejected) and result.key == "manifest.device_revoked"


def test_a_crl_from_another_ca_stops_the_start(fleet: Fleet, tmp_path: Path) -> None:
    other = create_fleet_ca("someone else")
    crl_path = tmp_path / "crl.pem"
    write_crl(crl_path, RevocationList(tmp_path / "r.json").build_crl(other))
    with pytest.raises(ConfigError, match="not signed by the fleet CA"):
        directory(fleet, crl_path)


def test_certificate_of_another_ca_or_another_name_is_refused(fleet: Fleet) -> None:
    key = generate_device_key()
    foreign = create_fleet_ca("foreign").issue_client_certificate(build_csr(key, D))
    save_certificate(fleet.certs_dir / f"{D}.crt", foreign)
    rec = seal(D, "nik-1", plaintext(10), key)
    result = check_manifest(directory(fleet), D, rec.manifest)
    assert isinstance(result, ManifestRejected) and result.key == "manifest.bad_certificate"
    # kec-3171-02's certificate filed under kec-3171-01's name
    fleet.enrol("kec-3171-02", key)
    (fleet.certs_dir / f"{D}.crt").write_bytes(
        (fleet.certs_dir / "kec-3171-02.crt").read_bytes())
    result = check_manifest(directory(fleet), D, rec.manifest)
    assert isinstance(result, ManifestRejected) and result.key == "manifest.bad_certificate"


def test_expired_certificate_is_refused_now_but_valid_for_its_past(fleet: Fleet) -> None:
    key = fleet.enrol(D)
    pem = (fleet.certs_dir / f"{D}.crt").read_bytes()
    later = DeviceDirectory(fleet.certs_dir, fleet.ca.cert,
                            clock=lambda: (datetime.now(UTC) + timedelta(days=400)).timestamp())
    rec = seal(D, "nik-1", plaintext(10), key)
    result = check_manifest(later, D, rec.manifest)
    assert isinstance(result, ManifestRejected) and result.key == "manifest.bad_certificate"
    assert signer_from_pem(fleet.ca.cert, pem, D, at=datetime.now(UTC)).cert_pem == pem
    with pytest.raises(DeviceRejected):
        signer_from_pem(fleet.ca.cert, pem, D, at=datetime.now(UTC) + timedelta(days=400))


def test_damaged_manifest_is_malformed(fleet: Fleet) -> None:
    fleet.enrol(D)
    result = check_manifest(directory(fleet), D, b"{not json")
    assert isinstance(result, ManifestRejected) and result.key == "manifest.malformed"


# --------------------------------------------------------------------------- verification


def stored(tmp_path: Path, rec: Sealed, data: bytes | None = None) -> CentralStore:
    store = CentralStore(tmp_path / "custody")
    body = rec.sealed if data is None else data
    store.save_offer(rec.device_id, rec.recording_id,
                     OfferRecord(0, 1, len(rec.sealed), rec.sha256, rec.manifest))
    store.put_chunk(rec.device_id, rec.recording_id, 0, 0, body)
    return store


def action(rec: Sealed, generation: int = 0) -> VerifyRecording:
    return VerifyRecording(1, rec.device_id, rec.recording_id, generation, len(rec.sealed),
                           rec.sha256, rec.manifest)


def test_verify_passes_and_returns_the_signer_certificate(fleet: Fleet, tmp_path: Path) -> None:
    rec = seal(D, "nik-1", plaintext(70_000), fleet.enrol(D))
    with stored(tmp_path, rec) as store:
        result, cert = verify_recording(store, directory(fleet), action(rec))
    assert result.ok
    assert cert == (fleet.certs_dir / f"{D}.crt").read_bytes()


def test_verify_reports_a_changed_byte_as_hash_mismatch(fleet: Fleet, tmp_path: Path) -> None:
    rec = seal(D, "nik-1", plaintext(5000), fleet.enrol(D))
    bad = bytearray(rec.sealed)
    bad[-1] ^= 1
    with stored(tmp_path, rec, bytes(bad)) as store:
        result, cert = verify_recording(store, directory(fleet), action(rec))
        assert (result.ok, result.key, cert) == (False, "hash_mismatch", None)
        result, _ = verify_recording(store, directory(fleet), action(rec, generation=1))
        assert result.key == "hash_mismatch"        # generation no longer current


def test_verify_refuses_a_file_sealed_under_another_recording_id(
        fleet: Fleet, tmp_path: Path) -> None:
    """The device signed a manifest for nik-1 over a file whose header says nik-2."""
    rec = seal(D, "nik-1", plaintext(500), fleet.enrol(D), header_id="nik-2")
    assert hashlib.sha256(rec.sealed).digest() == rec.sha256
    with stored(tmp_path, rec) as store:
        result, _ = verify_recording(store, directory(fleet), action(rec))
    assert (result.ok, result.key) == (False, "seal.manifest_mismatch")


def test_verify_checks_the_certificate_again(fleet: Fleet, tmp_path: Path) -> None:
    rec = seal(D, "nik-1", plaintext(500), fleet.enrol(D))
    (fleet.certs_dir / f"{D}.crt").unlink()          # decommissioned meanwhile
    with stored(tmp_path, rec) as store:
        result, _ = verify_recording(store, directory(fleet), action(rec))
    assert (result.ok, result.key) == (False, "manifest.unknown_device")
