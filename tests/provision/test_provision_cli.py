"""``edge provision`` into a staging root: online against the real broker and enrolment
service, and offline by request and answer files; then the config, files, modes and the
planned system changes are checked."""

import json
import stat
from pathlib import Path

import pytest

from edge.central.cli import main as central_main
from edge.cli import main as edge_main
from edge.config import load_config
from edge.intake.tokens import TokenStore
from edge.provision.host import PLAN_FILE
from tests.provision.provision_support import (
    Fleet,
    central_fleet,
    device_identity,
    running_service,
)
from tests.support.broker import publish_and_wait


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    with central_fleet(tmp_path) as f:
        yield f


def issue(fleet: Fleet, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[str, Path]:
    assert central_main(["enrol", "--dir", str(fleet.layout.root), "--office",
                         "Kecamatan Menteng", "--device-id", "kec-3171-01", "--apn",
                         "internet", "--workstations", "2", *extra]) == 0
    out = capsys.readouterr().out
    code = next(line.strip() for line in out.splitlines()
                if line.startswith("    ") and line.count("-") == 4)
    bundle = next(fleet.layout.path("bundles_dir").glob("*.edge-bundle.json"))
    return code, bundle


def check_staged_device(root: Path) -> None:
    cfg = load_config(root / "etc/edge/edge.toml")
    assert cfg.device.id == "kec-3171-01"
    assert cfg.device.office == "Kecamatan Menteng"
    assert cfg.identity.key == Path("/etc/edge/device.key")
    assert cfg.intake.tls_cert == Path("/etc/edge/intake.crt") and cfg.intake.host == "0.0.0.0"
    assert cfg.seal.central_public_key == Path("/etc/edge/central-seal.pub")
    assert cfg.section("mqtt").text("host") == "127.0.0.1"
    assert 1024**3 <= cfg.spool.quota_bytes <= 8 * 1024**3
    for name, want in [("etc/edge", 0o750), ("etc/edge/device.key", 0o600),
                       ("etc/edge/intake.key", 0o600), ("etc/edge/edge.toml", 0o640),
                       ("etc/edge/device.crt", 0o640), ("var/lib/edge", 0o700),
                       ("var/lib/edge/spool", 0o700), ("var/lib/edge/tokens.json", 0o600),
                       ("var/lib/edge/provision", 0o700)]:
        assert mode(root / name) == want, name
    plan = (root / PLAN_FILE).read_text().splitlines()
    for line in ["chown edge:edge /etc/edge/device.key", "chown root:edge /etc/edge/edge.toml",
                 "chown edge:edge /var/lib/edge/spool", "systemctl enable edge.target",
                 "systemctl restart edge.target"]:
        assert line in plan
    assert any(p.startswith("useradd --system --user-group") and p.endswith("edge (if missing)")
               for p in plan)
    assert any(p.startswith("nmcli connection add type gsm") and " apn internet " in p
               for p in plan)


def test_online_provisioning_into_a_staging_root(fleet: Fleet, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # No receiver runs in this test: the end-to-end recording check must fail, quickly.
    import edge.forward.selftest as fs
    from edge.errors import RemoteError

    def no_receiver(cfg: object, timeout: float) -> object:
        raise RemoteError("no custody receipt (no receiver in this test)",
                          key="selftest.no_receipt")

    monkeypatch.setattr(fs, "send_test_recording", no_receiver)
    code, bundle = issue(fleet, capsys)
    root = tmp_path / "pi"
    with running_service(fleet):
        rc = edge_main(["provision", code, "--bundle", str(bundle.parent), "--root", str(root),
                        "--timeout", "10"])
    out = capsys.readouterr().out
    check_staged_device(root)

    # the self-test ran at the end, on real backends, and is kept on the device
    latest = json.loads((root / "var/lib/edge/selftest/latest.json").read_text())
    status = {c["key"]: c["status"] for c in latest["checks"]}
    assert status["broker"] == "pass" and status["uplink.default"] == "pass"
    assert status["disk"] == "pass" and status["leds"] == "skip"
    assert status["recording"] == "fail"  # no central receiver in this test
    assert "selftest.no_receipt" in out
    assert "HASIL / RESULT: GAGAL / FAILED" in out and rc == 1
    assert len(list((root / "var/lib/edge/selftest").glob("*.txt"))) == 1

    # workstation tokens: printed once, stored hashed, and they work
    tokens = dict(line.strip().split(": ") for line in out.splitlines()
                  if line.startswith("  ws-"))
    assert sorted(tokens) == ["ws-01", "ws-02"]
    store = TokenStore(root / "var/lib/edge/tokens.json")
    assert store.check(tokens["ws-01"]).workstation == "ws-01"
    assert tokens["ws-01"] not in (root / "var/lib/edge/tokens.json").read_text()

    # the installed identity is a normal device on the broker
    device = fleet.broker.connect(device_identity(root, "kec-3171-01"))
    assert not publish_and_wait(device, "edge/kec-3171-01/up/telemetry", b"{}").is_failure

    # running it again with the same code: refused at once (already provisioned)
    rc = edge_main(["provision", code, "--bundle", str(bundle), "--root", str(root)])
    assert rc == 1
    assert "already provisioned as kec-3171-01" in capsys.readouterr().err


def test_offline_provisioning_by_files(fleet: Fleet, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, bundle = issue(fleet, capsys)
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / bundle.name).write_bytes(bundle.read_bytes())
    root = tmp_path / "pi"
    assert edge_main(["provision", code, "--offline", "--bundle", str(usb / bundle.name),
                      "--root", str(root)]) == 0
    request = usb / "kec-3171-01.request.json"
    assert request.exists() and b"PRIVATE" not in request.read_bytes()
    assert "edge-central sign-csr" in capsys.readouterr().out
    assert not (root / "etc/edge/edge.toml").exists()

    # at central (no broker needed): sign, then the same request again is refused
    assert central_main(["sign-csr", "--dir", str(fleet.layout.root), str(request)]) == 0
    answer = usb / "kec-3171-01.answer.json"
    assert answer.exists()
    capsys.readouterr()
    assert central_main(["sign-csr", "--dir", str(fleet.layout.root), str(request)]) == 0, \
        "the same key asking again gets the same certificates"
    tampered = json.loads(request.read_bytes())
    tampered["fields"]["request_id"] = "ffffffff"
    bad = usb / "tampered.json"
    bad.write_text(json.dumps(tampered))
    assert central_main(["sign-csr", "--dir", str(fleet.layout.root), str(bad)]) == 1
    assert "enrol.bad_request" in capsys.readouterr().err

    assert edge_main(["provision", "--install-cert", str(answer), "--root", str(root),
                      "--no-selftest"]) == 0
    check_staged_device(root)
    device = fleet.broker.connect(device_identity(root, "kec-3171-01"))
    assert not publish_and_wait(device, "edge/kec-3171-01/up/status", b"online").is_failure


def test_mistyped_code_and_missing_bundle(fleet: Fleet, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, bundle = issue(fleet, capsys)
    typo = ("X" if code[0] != "X" else "Y") + code[1:]
    assert edge_main(["provision", typo, "--bundle", str(bundle), "--root",
                      str(tmp_path / "pi")]) == 1
    assert "provision.bad_code" in capsys.readouterr().err
    assert edge_main(["provision", code, "--root", str(tmp_path / "pi")]) == 1
    assert "no provisioning bundle for this code" in capsys.readouterr().err
    # found on the SD card's boot partition without --bundle
    boot = tmp_path / "pi/boot/firmware/edge-bundles"
    boot.mkdir(parents=True)
    (boot / bundle.name).write_bytes(bundle.read_bytes())
    assert edge_main(["provision", code, "--offline", "--root", str(tmp_path / "pi")]) == 0
