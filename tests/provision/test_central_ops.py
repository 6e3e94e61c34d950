"""Central ops tools without a broker: init, codes and bundles, QR output, revocation and
the CRL, replacement of an appliance."""

import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from edge.central.cli import main as central_main
from edge.central.ops import Central, OpsError, init_central, load_layout
from edge.central.ops.qr import QUIET_ZONE, qr_matrix, qr_text
from edge.pki import FleetCA, build_csr, build_server_csr, generate_device_key, load_crl
from edge.provision.bundle import ca_fingerprint, open_bundle
from edge.provision.messages import EnrolRequest


@pytest.fixture
def central(tmp_path: Path):  # type: ignore[no-untyped-def]
    init_central(tmp_path / "c", broker_host="mqtt.central.example", apn="internet")
    c = Central(load_layout(tmp_path / "c"))
    yield c
    c.close()


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_init_makes_private_keys_private_and_never_overwrites(tmp_path: Path) -> None:
    layout = init_central(tmp_path / "c", broker_host="mqtt.central.example")
    for name in ("sealing_private_key", "receipt_private_key", "broker_key", "enrol_db"):
        assert mode(layout.path(name)) == 0o600, name
    assert mode(layout.path("ca_dir") / "ca.key") == 0o600
    assert mode(tmp_path / "c") == 0o700
    for svc in ("central-receiver", "central-fleet", "central-enrol"):
        cert, key = layout.service_files(svc)
        assert mode(key) == 0o600
        assert x509.load_pem_x509_certificate(cert.read_bytes()).subject.rfc4514_string() \
            == f"CN={svc}"
    assert load_crl(layout.path("crl")).next_update_utc is not None
    with pytest.raises(OpsError, match="not empty"):
        init_central(tmp_path / "c", broker_host="x")


def test_enrol_cli_prints_code_and_qr_and_writes_files(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       central: Central) -> None:
    root = str(central.layout.root)
    assert central_main(["enrol", "--dir", root, "--office", "Kec A", "--device-id",
                         "kec-0001-01", "--ttl", "2h"]) == 0
    out = capsys.readouterr().out
    text = next(line.strip() for line in out.splitlines() if line.startswith("    ") and
                line.count("-") == 4)
    bundle_file = next(central.layout.path("bundles_dir").glob("*.edge-bundle.json"))
    from edge.provision.code import parse_code
    code = parse_code(text)
    bundle = open_bundle(bundle_file.read_bytes(), code,
                         pinned_ca_sha256=ca_fingerprint(central.ca.cert))
    assert (bundle.device_id, bundle.office, bundle.apn) == ("kec-0001-01", "Kec A", "internet")
    assert timedelta(hours=1, minutes=59) < bundle.expires_at - bundle.issued_at \
        <= timedelta(hours=2)
    # the QR in the terminal is exactly segno's matrix for the code (light = block)
    assert qr_text(code.qr_payload) in out
    m = qr_matrix(code.qr_payload)
    lines = qr_text(code.qr_payload).splitlines()
    for y, row in enumerate(m):
        line = lines[(y + QUIET_ZONE) // 2]
        for x, dark in enumerate(row):
            ch = line[x + QUIET_ZONE]
            top = (y + QUIET_ZONE) % 2 == 0
            light_drawn = ch == "\u2588" or ch == ("\u2580" if top else "\u2584")
            assert light_drawn == (not dark)
    svg = next(central.layout.path("bundles_dir").glob("*.qr.svg"))
    png = next(central.layout.path("bundles_dir").glob("*.qr.png"))
    assert svg.read_bytes().startswith(b"<?xml") and png.read_bytes()[:4] == b"\x89PNG"
    assert mode(svg) == 0o600 and mode(bundle_file) == 0o644
    assert code.text.encode() not in bundle_file.read_bytes()  # the bundle holds no secret


def request(device_id: str) -> EnrolRequest:
    return EnrolRequest("abcdef01", build_csr(generate_device_key(), device_id),
                        build_server_csr(generate_device_key(), f"{device_id}.local"))


def test_a_new_code_cancels_the_old_and_revokes_its_claim(central: Central) -> None:
    first = central.issue_code("kec-0001-01", "Kec A")
    central.issue_code("kec-0001-01", "Kec A")
    assert central.store.code(first.code.claim_id).state == "cancelled"  # type: ignore
    crl = load_crl(central.layout.path("crl"))
    claim_serial = int(central.store.code(first.code.claim_id).claim_serial, 16)  # type: ignore
    assert crl.get_revoked_certificate_by_serial_number(claim_serial) is not None
    answer = central.handle(first.code.claim_id, request("kec-0001-01"))
    assert answer.reason == "enrol.code_cancelled"


def test_replacement_appliance_revokes_the_old_certificates(central: Central) -> None:
    first = central.issue_code("kec-0001-01", "Kec A")
    old = central.handle(first.code.claim_id, request("kec-0001-01"))
    assert old.device_cert is not None
    with pytest.raises(OpsError, match="already has a certificate"):
        central.issue_code("kec-0001-01", "Kec A")
    second = central.issue_code("kec-0001-01", "Kec A", replace=True)
    assert not central.handle(second.code.claim_id, request("kec-0001-01")).refused
    crl = load_crl(central.layout.path("crl"))
    assert crl.get_revoked_certificate_by_serial_number(old.device_cert.serial_number)
    assert len(central.store.certs("kec-0001-01", active_at=time.time())) == 2  # new pair


def test_revoke_and_crl_commands(central: Central, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(central.layout.root)
    assert central_main(["revoke", "--dir", root, "kec-0404-01"]) == 1
    assert "nothing to revoke" in capsys.readouterr().err
    issued = central.issue_code("kec-0001-01", "Kec A")
    cert = central.handle(issued.code.claim_id, request("kec-0001-01")).device_cert
    assert cert is not None
    assert central_main(["revoke", "--dir", root, "kec-0001-01", "--reason",
                         "key-compromise"]) == 0
    out = capsys.readouterr().out
    assert "SIGHUP" in out and "restart" in out
    crl = load_crl(central.layout.path("crl"))
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert central_main(["crl", "refresh", "--dir", root]) == 0
    fresh = load_crl(central.layout.path("crl"))
    assert fresh.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number
    assert fresh.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert central_main(["crl", "status", "--dir", root]) == 0


def test_crl_status_warns_well_before_next_update(tmp_path: Path) -> None:
    init_central(tmp_path / "c", broker_host="mqtt.central.example")
    later = Central(load_layout(tmp_path / "c"), clock=lambda: time.time() + 8 * 86400)
    try:
        assert later.crl_status().state == "warning"
        status, _ = later.refresh_crl()
        assert status.state == "ok"
    finally:
        later.close()
    assert central_main(["crl", "status", "--dir", str(tmp_path / "c")]) == 0


def test_offline_request_expired_at_central(tmp_path: Path, central: Central) -> None:
    issued = central.issue_code("kec-0001-01", "Kec A", ttl=timedelta(minutes=30))
    data = request("kec-0001-01").encode_file(issued.code.claim_id, "kec-0001-01",
                                              issued.code.claim_key())
    later = Central(central.layout, clock=lambda: time.time() + 3600)
    try:
        from edge.central.ops.errors import CodeRefused
        with pytest.raises(CodeRefused) as err:
            later.sign_request_file(data)
        assert err.value.key == "enrol.code_expired"
    finally:
        later.close()


def test_service_identities_are_not_issued_through_enrolment(central: Central) -> None:
    with pytest.raises(OpsError):
        central.issue_code("central-receiver", "x")
    issued = central.issue_code("kec-0001-01", "Kec A")
    bad = request("central-receiver")
    assert central.handle(issued.code.claim_id, bad).reason == "enrol.wrong_device"
    assert isinstance(FleetCA.load(central.layout.path("ca_dir")), FleetCA)


def test_two_devices_racing_for_one_code_only_one_wins(central: Central) -> None:
    import threading
    issued = central.issue_code("kec-0001-01", "Kec A")
    answers = []
    barrier = threading.Barrier(2)

    def claim() -> None:
        c = Central(central.layout)  # each as its own process would: own connection
        try:
            barrier.wait()
            answers.append(c.handle(issued.code.claim_id, request("kec-0001-01")))
        finally:
            c.close()

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(a.reason or "issued" for a in answers) == ["enrol.code_used", "issued"]


def test_a_crash_before_the_claim_is_revoked_is_finished_at_the_next_start(
        central: Central, monkeypatch: pytest.MonkeyPatch) -> None:
    issued = central.issue_code("kec-0001-01", "Kec A")

    def crash(self: Central, claim_id: str, replaced: list[str]) -> None:
        raise KeyboardInterrupt("power cut after the answer")

    monkeypatch.setattr(Central, "_finish_claim", crash)
    with pytest.raises(KeyboardInterrupt):
        central.handle(issued.code.claim_id, request("kec-0001-01"))
    monkeypatch.undo()
    row = central.store.code(issued.code.claim_id)
    assert row is not None and row.state == "used" and not row.claim_revoked
    restarted = Central(central.layout)
    try:
        assert restarted.reconcile() == [issued.code.claim_id]
        assert restarted.reconcile() == []
    finally:
        restarted.close()
    crl = load_crl(central.layout.path("crl"))
    assert crl.get_revoked_certificate_by_serial_number(int(row.claim_serial, 16)) is not None
