"""Enrolment end to end against a real Mosquitto with the repo's config and ACL, a central
folder from ``edge-central init`` and the enrolment service on the claim channel."""

import time
from pathlib import Path

import pytest

from edge.pki import build_csr, build_server_csr, generate_device_key
from edge.provision.bundle import open_bundle
from edge.provision.claim import exchange
from edge.provision.errors import ClaimChannelError
from edge.provision.messages import EnrolRequest
from tests.provision.provision_support import Fleet, central_fleet, running_service
from tests.support.broker import BrokerError, Identity, publish_and_wait


@pytest.fixture
def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    with central_fleet(tmp_path) as f:
        yield f


def request_for(device_id: str, rid: str = "00112233") -> tuple[EnrolRequest, object]:
    key = generate_device_key()
    return EnrolRequest(rid, build_csr(key, device_id),
                        build_server_csr(generate_device_key(), f"{device_id}.local")), key


def enrol(fleet: Fleet, device_id: str = "kec-3171-01"):  # type: ignore[no-untyped-def]
    issued = fleet.central.issue_code(device_id, "Kecamatan Menteng")
    bundle = open_bundle(issued.bundle_path.read_bytes(), issued.code)
    return issued, bundle


def test_claim_gives_a_device_identity_that_works_on_the_broker(fleet: Fleet,
                                                                 tmp_path: Path) -> None:
    issued, bundle = enrol(fleet)
    request, key = request_for("kec-3171-01")
    with running_service(fleet):
        answer = exchange(bundle, issued.code, request, timeout=10)
    assert not answer.refused, answer.message
    assert answer.device_cert is not None and answer.intake_cert is not None
    assert answer.device_cert.public_key() == key.public_key()  # type: ignore[attr-defined]

    from edge.pki import save_certificate, save_private_key
    cert, keyfile = tmp_path / "d.pem", tmp_path / "d.key"
    save_certificate(cert, answer.device_cert)
    save_private_key(keyfile, key)  # type: ignore[arg-type]
    device = fleet.broker.connect(Identity("kec-3171-01", cert, keyfile, 0))
    assert not publish_and_wait(device, "edge/kec-3171-01/up/status", b"online").is_failure
    assert publish_and_wait(device, "edge/kec-9999-99/up/status", b"x").value == 0x87
    row = fleet.central.store.code(issued.code.claim_id)
    assert row is not None and row.state == "used" and row.claim_revoked


def test_used_code_is_refused_with_a_reason_then_cut_off_at_tls(fleet: Fleet) -> None:
    issued, bundle = enrol(fleet)
    first, _ = request_for("kec-3171-01")
    # No broker reload: the claim certificate is on the CRL file but not yet loaded, so the
    # service itself must refuse the second claim.
    with running_service(fleet, reload=False):
        assert not exchange(bundle, issued.code, first, timeout=10).refused
        again = exchange(bundle, issued.code, first, timeout=10)  # lost answer: resend
        assert not again.refused
        second, _ = request_for("kec-3171-01", rid="44556677")
        refused = exchange(bundle, issued.code, second, timeout=10)
    assert refused.reason == "enrol.code_used"
    assert "already been used" in refused.message
    fleet.broker.reload()  # now the broker knows: the claim cannot even connect
    with pytest.raises(ClaimChannelError, match="already been used"):
        exchange(bundle, issued.code, second, timeout=10)


def test_expired_code_is_refused(fleet: Fleet) -> None:
    issued, bundle = enrol(fleet)
    request, _ = request_for("kec-3171-01")
    later = time.time() + 25 * 3600  # central's clock a day later; the claim cert is 24 h
    with running_service(fleet, clock=lambda: later):
        answer = exchange(bundle, issued.code, request, timeout=10)
    assert answer.reason == "enrol.code_expired"
    assert fleet.central.store.code(issued.code.claim_id).state == "issued"  # type: ignore


def test_csr_must_be_for_the_device_the_code_names(fleet: Fleet) -> None:
    issued, bundle = enrol(fleet)
    request, _ = request_for("kec-0000-00")
    with running_service(fleet):
        answer = exchange(bundle, issued.code, request, timeout=10)
    assert answer.reason == "enrol.wrong_device"


def test_revoked_device_is_refused_after_the_crl_is_loaded(fleet: Fleet,
                                                            tmp_path: Path) -> None:
    issued, bundle = enrol(fleet)
    request, key = request_for("kec-3171-01")
    with running_service(fleet):
        answer = exchange(bundle, issued.code, request, timeout=10)
    from edge.pki import save_certificate, save_private_key
    assert answer.device_cert is not None
    ident = Identity("kec-3171-01", tmp_path / "d.pem", tmp_path / "d.key", 0)
    save_certificate(ident.cert, answer.device_cert)
    save_private_key(ident.key, key)  # type: ignore[arg-type]
    fleet.broker.connect(ident).disconnect()
    serials, note = fleet.central.revoke_device("kec-3171-01")  # writes the CRL, reloads
    assert format(answer.device_cert.serial_number, "x") in serials
    assert note == "broker reloaded"
    with pytest.raises(BrokerError):
        fleet.broker.connect(ident, client_id="kec-3171-01-fresh")
    from edge.provision.claim import diagnose_tls
    # Mosquitto closes without a TLS alert: the probe sees the TLS session end before any
    # CONNACK (and the broker's log names the reason).
    why = diagnose_tls("127.0.0.1", fleet.broker.port, fleet.broker.ca_path, ident.cert,
                       ident.key)
    assert why != ""
    assert "certificate verify failed" in fleet.broker.log()
