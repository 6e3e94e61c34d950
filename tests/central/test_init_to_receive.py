"""From ``edge-central init`` to a receiver that can check devices: the central.toml init
writes is all ``edge-central receive`` needs, and every device certificate the enrolment
authority issues lands where the receiver looks for it (and is refused once revoked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.central.devices import DeviceDirectory, DeviceRejected
from edge.central.ops import Central, init_central, load_layout
from edge.central.receiver_app import ReceiverApp
from edge.central.settings import load_settings
from edge.pki import build_csr, build_server_csr, generate_device_key, load_certificate
from edge.provision.messages import EnrolRequest
from edge.seal import Manifest, sign_manifest

D = "kec-0001-01"


def request(key: object, device_id: str = D) -> EnrolRequest:
    return EnrolRequest("abcdef01", build_csr(key, device_id),  # type: ignore[arg-type]
                        build_server_csr(generate_device_key(), f"{device_id}.local"))


@pytest.fixture
def central(tmp_path: Path):  # type: ignore[no-untyped-def]
    init_central(tmp_path / "c", broker_host="mqtt.central.example")
    c = Central(load_layout(tmp_path / "c"))
    yield c
    c.close()


def test_the_file_init_writes_is_a_complete_receiver_config(central: Central,
                                                            tmp_path: Path) -> None:
    s = load_settings(central.layout.root / "central.toml",
                      {"data_dir": tmp_path / "custody"})
    s.require("ca", "crl", "cert", "key", "receipt_key", "sealing_key", "device_certs_dir",
              "broker_host")
    for p in (s.ca, s.crl, s.cert, s.key, s.receipt_key, s.sealing_key):
        assert p is not None and p.is_file(), p
    assert s.device_certs_dir == central.layout.root / "devices"
    # the receiver connects to the broker's service listener, not the devices' port
    assert (s.broker_host, s.broker_port) == ("mqtt.central.example", 8884)
    assert (central.layout.broker_port, central.layout.services_port) == (8883, 8884)
    app = ReceiverApp(s)          # loads every key and certificate; does not connect yet
    app.store.close()


def test_issued_device_certificates_are_filed_for_the_receivers(central: Central) -> None:
    layout = central.layout
    devices = DeviceDirectory(layout.path("device_certs_dir"),
                              load_certificate(layout.path("ca_dir") / "ca.pem"),
                              layout.path("crl"))
    with pytest.raises(DeviceRejected) as e:
        devices.signer(D)
    assert e.value.key == "manifest.unknown_device"

    key = generate_device_key()
    first = request(key)
    issued = central.issue_code(D, "Kec A")
    answer = central.handle(issued.code.claim_id, first)
    assert answer.device_cert is not None
    assert devices.signer(D).public_key.public_numbers() == key.public_key().public_numbers()
    m = Manifest(D, "nik-1", 0, 1, "0" * 64, 2, "0" * 64, "x25519/...", 4096, "now")
    from edge.seal.manifest import verify_manifest
    assert verify_manifest(sign_manifest(m, key).to_bytes(), devices.signer(D).public_key) == m

    # A replacement appliance: its certificate replaces the file, and a late resend of the
    # old appliance's answer does not bring the old one back.
    new_key = generate_device_key()
    second = central.issue_code(D, "Kec A", replace=True)
    assert not central.handle(second.code.claim_id, request(new_key)).refused
    assert central.handle(issued.code.claim_id, first).device_cert is not None  # resend
    assert devices.signer(D).public_key.public_numbers() == \
        new_key.public_key().public_numbers()

    central.revoke_device(D)
    with pytest.raises(DeviceRejected) as e:
        devices.signer(D)
    assert e.value.key == "manifest.device_revoked"
