"""``edge-central fleet serve`` as a real process: broker with TLS, store, HTTP; SIGTERM stops
it cleanly with its state written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from edge.central.fleet.store_sqlite import SqliteStore
from edge.central.fleet_cli import parse_hostport
from edge.errors import ConfigError
from edge.telemetry.schema import online_status
from tests.fleet.fleet_support import Broker, payload
from tests.fleet.test_fleet_subscriber import client
from tests.support.broker import free_port


def test_serve_subscribes_serves_and_stops_cleanly(broker: Broker, tmp_path: Path) -> None:
    tls = broker.pki.issue("central-fleet")
    offices = tmp_path / "offices.csv"
    offices.write_text("device_id,office,region\nkec-cli,Kecamatan Sukajadi,Jawa Barat\n")
    port = free_port()
    db = tmp_path / "fleet.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.central.cli", "fleet", "serve",
         "--broker", f"{broker.host}:{broker.service_port}", "--mqtt-ca", str(tls.ca),
         "--mqtt-cert", str(tls.cert), "--mqtt-key", str(tls.key),
         "--store", f"sqlite://{db}", "--listen", f"127.0.0.1:{port}",
         "--offices", str(offices), "--flush-interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "fleet serve did not become healthy"
            time.sleep(0.1)
        dev = client(broker, broker.pki.issue("kec-cli"), "kec-cli")
        dev.publish("edge/kec-cli/up/status", online_status(time.time()), qos=1,
                    retain=True).wait_for_publish(5)
        dev.publish("edge/kec-cli/up/telemetry", payload(backlog_items=9)).wait_for_publish(5)
        dev.disconnect()
        dev.loop_stop()
        deadline = time.monotonic() + 10
        while True:
            r = httpx.get(url + "/api/v1/offices/kec-cli", timeout=2)
            if r.status_code == 200 and r.json()["backlog"]["items"] == 9:
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
        assert r.json()["office"] == "Kecamatan Sukajadi"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = SqliteStore(db)
    [rec] = store.load_devices()
    assert rec.device_id == "kec-cli" and rec.telemetry is not None
    store.close()
    forget = subprocess.run([sys.executable, "-m", "edge.central.cli", "fleet", "forget",
                             "kec-cli", "--store", f"sqlite://{db}"], capture_output=True,
                            text=True)
    assert forget.returncode == 0 and "forgotten" in forget.stdout


def test_plain_mqtt_only_to_loopback(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "edge.central.cli", "fleet", "serve",
                        "--broker", "mqtt.example.org", "--insecure-plain-mqtt",
                        "--store", f"sqlite://{tmp_path}/f.db"], capture_output=True, text=True)
    assert r.returncode == 1 and "config.invalid" in r.stderr and "loopback" in r.stderr


@pytest.mark.parametrize("text,expected", [
    ("broker", ("broker", 8883)), ("broker:1884", ("broker", 1884)),
    ("[::1]:9000", ("::1", 9000)), ("[::1]", ("::1", 8883)),
])
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text, 8883) == expected


@pytest.mark.parametrize("bad", ["broker:http", "broker:0", "[::1", ":80"])
def test_bad_host_port(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_hostport(bad, 8883)
