"""The whole custody chain with every program under its own systemd unit, in a booted
systemd container, installed by install.sh (device and ``--central``) and configured the way
the docs say: ``edge-central init`` for the central folder, files placed as provisioning
places them, ``systemctl start``.

    workstation ──HTTP──▶ edge-intake.service ──spool──▶ edge-forward.service
        ──MQTT/TLS (device listener)──▶ Mosquitto (repo config, on the host)
        ──MQTT/TLS (service listener)──▶ edge-central-receive.service ──receipt──▶ back
    edge-forward.service ──status/telemetry──▶ edge-central-fleet.service (HTTP API)

What this catches that the other tests cannot: a unit that starts the wrong command, a
sandbox that forbids what the program does, the services' user unable to read its files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from edge.pki import FleetCA, build_csr, generate_device_key, save_certificate
from tests.deploy.nspawn import Machine
from tests.support.broker import Broker, free_port
from tests.support.office import write_toml

pytestmark = pytest.mark.slow

DEVICE = "kec-unit-01"
CENTRAL = "/etc/edge-central"


class Site:
    def __init__(self, machine: Machine, broker: Broker, intake_port: int, fleet_port: int,
                 token: str) -> None:
        self.machine = machine
        self.broker = broker
        self.intake = f"http://127.0.0.1:{intake_port}"
        self.fleet = f"http://127.0.0.1:{fleet_port}"
        self.token = token

    def central_list(self) -> list[dict[str, object]]:
        r = self.machine.run("/opt/edge/bin/edge-central", "list", "--json",
                             env={"EDGE_CONFIG": f"{CENTRAL}/central.toml"})
        rows: list[dict[str, object]] = json.loads(r.stdout)
        return rows

    def journals(self) -> str:
        return "\n".join(f"--- {u}\n{self.machine.journal(u)[-3000:]}" for u in (
            "edge-intake.service", "edge-forward.service", "edge-central-receive.service",
            "edge-central-fleet.service")) + f"\n--- broker\n{self.broker.log()[-3000:]}"


def wait_for(what: str, cond: object, site: Site, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():  # type: ignore[operator]
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}\n{site.journals()}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("chain")
    (base / "machine").mkdir()
    m = Machine(base / "machine")
    broker = Broker(base / "broker")
    try:
        m.boot()
        for args in ((), ("--central",)):
            r = m.run("bash", str(Machine.SRC / "provisioning/install.sh"), *args, timeout=600)
            assert "done: edge 0.1.0" in r.stderr, r.stderr
        # central ops, as docs/provisioning.md says (the group exists: install.sh made it)
        assert broker.service_port is not None
        r = m.run("/opt/edge/bin/edge-central", "init", CENTRAL, "--broker-host", "127.0.0.1",
                  "--broker-port", str(broker.port), "--service-port", str(broker.service_port))
        assert "group edge-central reads" in r.stdout, r.stdout
        central = m.root / CENTRAL.lstrip("/")
        # the central broker with the repo config and the files init made
        broker.render(cafile=central / "ca/ca.pem", certfile=central / "broker/server.pem",
                      keyfile=central / "broker/server.key", crlfile=central / "crl.pem")
        broker.start()

        # the device: key made here, certificate from the central CA (as enrolment does)
        ca = FleetCA.load(central / "ca")
        key = generate_device_key()
        cert = ca.issue_client_certificate(build_csr(key, DEVICE))
        pem = cert.public_bytes(serialization.Encoding.PEM)
        m.write("/etc/edge/device.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), 0o600)
        m.write("/etc/edge/device.crt", pem, 0o640)
        save_certificate(central / "devices" / f"{DEVICE}.crt", cert)
        (central / "devices" / f"{DEVICE}.crt").chmod(0o644)
        for src, dst in (("ca/ca.pem", "fleet-ca.crt"), ("keys/central-seal.pub",
                                                          "central-seal.pub"),
                         ("keys/receipt.pub", "receipt.pub")):
            m.write(f"/etc/edge/{dst}", (central / src).read_bytes(), 0o640)
        intake_port, fleet_port = free_port(), free_port()
        cfg = base / "edge.toml"
        write_toml(cfg, {
            "device": {"id": DEVICE, "state_dir": "/var/lib/edge"},
            "identity": {"key": "/etc/edge/device.key", "cert": "/etc/edge/device.crt",
                         "ca": "/etc/edge/fleet-ca.crt"},
            "seal": {"central_public_key": "/etc/edge/central-seal.pub",
                     "kem": "mlkem768-x25519"},
            "spool": {"quota_bytes": "256MiB", "reserve_bytes": "16MiB"},
            "intake": {"host": "127.0.0.1", "port": intake_port,
                       "max_recording_bytes": "64MiB",
                       "tokens_file": "/var/lib/edge/tokens.json"},
            "mqtt": {"host": "127.0.0.1", "port": broker.port,
                     "receipt_public_key": "/etc/edge/receipt.pub"},
            "forward": {"telemetry_interval_s": 5},
        })
        m.write("/etc/edge/edge.toml", cfg.read_text(), 0o640)
        m.run("chown", "root:edge", "/etc/edge/device.crt", "/etc/edge/fleet-ca.crt",
              "/etc/edge/central-seal.pub", "/etc/edge/receipt.pub", "/etc/edge/edge.toml")
        m.run("chown", "edge:edge", "/etc/edge/device.key")
        token = m.run("/opt/edge/bin/edge", "--config", "/etc/edge/edge.toml", "token", "add",
                      "ws-01").stdout.split()[-1]
        m.run("chown", "-R", "edge:edge", "/var/lib/edge")
        # the fleet view's unit as installed, only listening on a free port here
        m.write("/etc/systemd/system/edge-central-fleet.service.d/listen.conf",
                "[Service]\nExecStart=\nExecStart=/opt/edge/bin/edge-central fleet serve "
                f"--listen 127.0.0.1:{fleet_port}\n")
        m.run("systemctl", "daemon-reload")
        for unit in ("edge-central-receive.service", "edge-central-fleet.service",
                     "edge-intake.service", "edge-forward.service"):
            m.run("systemctl", "start", unit, timeout=180)
        yield Site(m, broker, intake_port, fleet_port, token)
    finally:
        broker.close()
        m.shutdown()


def test_a_recording_crosses_the_chain_between_units(site: Site) -> None:
    m = site.machine
    for unit in ("edge-central-receive.service", "edge-central-fleet.service",
                 "edge-intake.service", "edge-forward.service"):
        m.wait_active(unit)
    body = bytes(range(256)) * 2000
    with httpx.Client(base_url=site.intake, timeout=30,
                      headers={"Authorization": f"Bearer {site.token}"}) as c:
        r = c.put("/v1/recordings/nik-unit-0001", content=body)
        assert r.status_code == 201, r.text

        def receipted() -> bool:
            state = c.get("/v1/recordings/nik-unit-0001").json().get("state")
            return state in ("receipted", "purged")
        wait_for("the central receipt on the device", receipted, site)

    [row] = [x for x in site.central_list() if x["recording_id"] == "nik-unit-0001"]
    assert row["device_id"] == DEVICE and row["plaintext_size"] == len(body)
    assert str(row["receiver_id"]).startswith("central-receiver-")
    m.run("/opt/edge/bin/edge-central", "open", "nik-unit-0001", "--device", DEVICE,
          "--out", "/root/opened.bin", env={"EDGE_CONFIG": f"{CENTRAL}/central.toml"})
    assert (m.root / "root/opened.bin").read_bytes() == body
    # the receiver came in on the service listener with its own client id (on the device
    # listener the broker would have renamed it to its certificate's CN)
    assert f"as {row['receiver_id']} (" in site.broker.log()


def test_the_fleet_view_shows_the_office_online(site: Site) -> None:
    def online() -> bool:
        r = httpx.get(f"{site.fleet}/api/v1/offices/{DEVICE}", timeout=5)
        return r.status_code == 200 and r.json().get("state") == "online"
    wait_for("the office online in the fleet view", online, site)


def test_central_services_run_unprivileged_and_cannot_read_the_fleet_secrets(
        site: Site) -> None:
    m = site.machine
    for unit in ("edge-central-receive.service", "edge-central-fleet.service"):
        pid = m.show(unit, "MainPID")
        status = m.run("cat", f"/proc/{pid}/status").stdout
        assert "NoNewPrivs:\t1" in status and "CapEff:\t0000000000000000" in status
    for secret in ("ca/ca.key", "keys/central-seal.key", "services/central-enrol.key"):
        r = m.run("setpriv", "--reuid=edge-central", "--regid=edge-central", "--init-groups",
                  "cat", f"{CENTRAL}/{secret}", check=False)
        assert r.returncode != 0 and "Permission denied" in r.stderr, secret
