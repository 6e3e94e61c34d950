"""`edge-central broker-config`: the central Mosquitto configured from the central folder
alone, started for real; devices and services land on their own listeners."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.broker.local import MOSQUITTO, free_port
from edge.central.ops import init_central
from edge.pki import FleetCA, build_csr, generate_device_key, save_certificate, save_private_key


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.central.cli", *args],
                          capture_output=True, text=True, timeout=60)


def connect(port: int, ca: Path, cert: Path, key: Path, client_id: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key),
              cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 10
    while not c.is_connected():
        assert time.monotonic() < deadline, f"{client_id} did not connect on {port}"
        time.sleep(0.05)
    return c


@pytest.fixture
def broker_from_cli(tmp_path: Path) -> Iterator[tuple[Path, int, int, Path]]:
    port, service_port = free_port(), free_port()
    layout = init_central(tmp_path / "c", broker_host="127.0.0.1", broker_port=port,
                          service_port=service_port, broker_names=["127.0.0.1"])
    r = cli("broker-config", "--dir", str(layout.root), "--out", str(tmp_path / "mq"),
            "--bind", "127.0.0.1", "--persistence", str(tmp_path / "persist"),
            "--user", "root", "--log-dest", f"file {tmp_path / 'mq.log'}")
    assert r.returncode == 0, r.stderr
    assert f"port {service_port} on 127.0.0.1" in r.stdout
    proc = subprocess.Popen([MOSQUITTO, "-c", str(tmp_path / "mq/mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", service_port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
    try:
        yield layout.root, port, service_port, tmp_path / "mq.log"
    finally:
        proc.terminate()
        proc.wait(10)


def test_devices_and_services_land_on_their_listeners(
        broker_from_cli: tuple[Path, int, int, Path], tmp_path: Path) -> None:
    root, port, service_port, log = broker_from_cli
    ca = FleetCA.load(root / "ca")
    key = generate_device_key()
    save_private_key(tmp_path / "dev.key", key)
    save_certificate(tmp_path / "dev.pem", ca.issue_client_certificate(build_csr(key,
                                                                                "kec-cli-01")))
    connect(port, root / "ca/ca.pem", tmp_path / "dev.pem", tmp_path / "dev.key",
            client_id="not-my-id")
    connect(service_port, root / "ca/ca.pem", root / "services/central-receiver.pem",
            root / "services/central-receiver.key", client_id="rx-1")
    text = log.read_text()
    assert "as kec-cli-01 (" in text and "as not-my-id" not in text   # forced to its CN
    assert "as rx-1 (" in text                                         # services keep theirs


def test_one_port_for_both_is_refused_with_the_fix(tmp_path: Path) -> None:
    port = free_port()
    layout = init_central(tmp_path / "c", broker_host="127.0.0.1", broker_port=port,
                          service_port=port)
    r = cli("broker-config", "--dir", str(layout.root), "--out", str(tmp_path / "mq"))
    assert r.returncode != 0
    assert "service_port is the device port: give the central services their own port" \
        in r.stderr
    assert not (tmp_path / "mq").exists()
