"""The provisioning bundle: a blank device trusts it only through the code it was given."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from edge.pki import FleetCA, IdentityKind, build_csr, create_fleet_ca
from edge.provision.bundle import Bundle, ca_fingerprint, open_bundle, seal_bundle
from edge.provision.code import EnrolmentCode, new_code
from edge.provision.errors import BundleError
from edge.seal.keys import generate_sealing_keys


def make_bundle(ca: FleetCA, code: EnrolmentCode, claim_code: EnrolmentCode | None = None
                ) -> Bundle:
    claim_code = claim_code or code
    claim = ca.issue_client_certificate(build_csr(claim_code.claim_key(), claim_code.claim_id),
                                        expect=IdentityKind.CLAIM)
    now = datetime.now(UTC)
    receipt = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Bundle(
        claim_id=code.claim_id, device_id="kec-3171-01", office="Kecamatan Menteng",
        broker_host="mqtt.central.example", broker_port=8883,
        ca_pem=ca.cert.public_bytes(serialization.Encoding.PEM),
        claim_cert_pem=claim.public_bytes(serialization.Encoding.PEM),
        sealing_public_json=generate_sealing_keys().public().to_json(),
        kem="mlkem768-x25519", receipt_public_pem=receipt, issued_at=now,
        expires_at=now + timedelta(hours=24), apn="internet", workstations=3)


@pytest.fixture(scope="module")
def ca() -> FleetCA:
    return create_fleet_ca("test fleet CA")


def test_round_trip(ca: FleetCA) -> None:
    code = new_code()
    original = make_bundle(ca, code)
    opened = open_bundle(seal_bundle(original, ca=ca, code=code), code,
                         pinned_ca_sha256=ca_fingerprint(ca.cert))
    assert opened == original


def test_another_code_cannot_open_it(ca: FleetCA) -> None:
    code = new_code()
    data = seal_bundle(make_bundle(ca, code), ca=ca, code=code)
    with pytest.raises(BundleError, match="not issued for this code"):
        open_bundle(data, new_code())


def test_swapped_ca_or_broker_is_refused(ca: FleetCA) -> None:
    code = new_code()
    doc = json.loads(seal_bundle(make_bundle(ca, code), ca=ca, code=code))
    doc["body"]["broker"]["host"] = "evil.example"
    with pytest.raises(BundleError, match="not issued for this code"):
        open_bundle(json.dumps(doc).encode(), code)


def test_a_forger_with_the_code_still_needs_the_pinned_ca(ca: FleetCA) -> None:
    code = new_code()
    rogue = create_fleet_ca("test fleet CA")
    data = seal_bundle(make_bundle(rogue, code), ca=rogue, code=code)
    assert open_bundle(data, code).device_id == "kec-3171-01"  # only the code vouches
    with pytest.raises(BundleError, match="does not trust"):
        open_bundle(data, code, pinned_ca_sha256=ca_fingerprint(ca.cert))


def test_claim_certificate_must_be_for_the_codes_key(ca: FleetCA) -> None:
    code = new_code()
    data = seal_bundle(make_bundle(ca, code, claim_code=new_code()), ca=ca, code=code)
    with pytest.raises(BundleError, match="not for this code"):
        open_bundle(data, code)


def test_not_a_bundle() -> None:
    with pytest.raises(BundleError, match="not an edge provisioning bundle"):
        open_bundle(b"{}", new_code())
