"""The fleet view against a real Mosquitto with TLS client certificates and a per-device ACL;
the appliance is a real process that is killed with SIGKILL to fire its Last Will."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.central.fleet.service import FleetService
from edge.central.fleet.store_sqlite import SqliteStore
from edge.central.fleet.subscriber import BrokerConfig, FleetSubscriber
from tests.fleet.fleet_support import Broker, TlsFiles, payload

DEVICE = textwrap.dedent("""
    import sys, time
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from edge.telemetry.schema import last_will, online_status, status_topic, telemetry_topic
    from edge.telemetry.collect import build_telemetry
    from pathlib import Path
    device, host, port, ca, cert, key, state_dir = sys.argv[1:]
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=device,
                    protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
    c.will_set(status_topic(device), last_will(), qos=1, retain=True)
    c.connect(host, int(port), keepalive=30)
    c.loop_start()
    c.publish(status_topic(device), online_status(time.time()), qos=1, retain=True)
    data = build_telemetry(state_dir=Path(state_dir), backlog_items=4, backlog_bytes=7000,
                           backlog_oldest_age_s=90, uplink="4g", seq=1)
    c.publish(telemetry_topic(device), data, qos=0).wait_for_publish(5)
    print("ready", flush=True)
    time.sleep(60)
""")


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def client(broker: Broker, tls: TlsFiles, client_id: str) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(tls.ca), certfile=str(tls.cert), keyfile=str(tls.key))
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


@pytest.fixture
def fleet(broker: Broker, tmp_path: Path) -> Iterator[tuple[FleetService, FleetSubscriber]]:
    tls = broker.pki.issue("central-fleet")
    svc = FleetService(SqliteStore(tmp_path / "fleet.db"))
    svc.start(loops=False)
    sub = FleetSubscriber(svc, BrokerConfig(broker.host, broker.service_port, tls.ca, tls.cert,
                                            tls.key, client_id="central-fleet"))
    sub.start()
    assert sub.wait_subscribed(10), broker.log.read_text()
    yield svc, sub
    sub.stop()
    svc.store.close()


def test_status_telemetry_and_last_will_from_a_killed_appliance(
        broker: Broker, fleet: tuple[FleetService, FleetSubscriber], tmp_path: Path) -> None:
    svc, _ = fleet
    tls = broker.pki.issue("kec-a")
    dev = subprocess.Popen(
        [sys.executable, "-c", DEVICE, "kec-a", broker.host, str(broker.port), str(tls.ca),
         str(tls.cert), str(tls.key), str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert dev.stdout is not None and dev.stdout.readline() == b"ready\n"
        wait_until(lambda: (r := svc.record("kec-a")) is not None and r.telemetry is not None
                   and r.status == "online", what="kec-a online with telemetry")
        st = svc.status("kec-a")
        assert st is not None and st.state == "online" and st.on_4g and st.backlog_items == 4
        dev.send_signal(signal.SIGKILL)
        dev.wait()
        wait_until(lambda: (r := svc.record("kec-a")) is not None and r.status == "offline",
                   what="Last Will")
        st = svc.status("kec-a")
        assert st is not None and st.state == "offline"
        assert st.conditions[0] == "offline (power or link lost)"
    finally:
        dev.kill()
        dev.wait()
    assert svc.flush_once() == 1
    [saved] = svc.store.load_devices()
    assert saved.status == "offline" and saved.telemetry_count == 1


def test_a_device_cannot_speak_for_another(
        broker: Broker, fleet: tuple[FleetService, FleetSubscriber]) -> None:
    svc, _ = fleet
    b = client(broker, broker.pki.issue("kec-b"), "kec-b")
    try:
        # The broker's ACL drops a publish on another device's topic...
        b.publish("edge/kec-a/up/telemetry", payload(backlog_items=999)).wait_for_publish(5)
        # ...and a payload that names a device is refused by the schema.
        b.publish("edge/kec-b/up/telemetry", b'{"v":"1.0","id":"kec-a"}').wait_for_publish(5)
        b.publish("edge/kec-b/up/telemetry", payload(backlog_items=1)).wait_for_publish(5)
        wait_until(lambda: (r := svc.record("kec-b")) is not None and r.telemetry is not None,
                   what="kec-b telemetry")
    finally:
        b.disconnect()
        b.loop_stop()
    assert svc.record("kec-a") is None
    rec = svc.record("kec-b")
    assert rec is not None and rec.rejected_count == 1 and "unknown key(s) id" in (
        rec.last_reject or "")
    assert svc.stats.rejected["telemetry.invalid"] == 1


def test_restart_rebuilds_from_retained_status_without_resetting_since(
        broker: Broker, tmp_path: Path) -> None:
    dev = client(broker, broker.pki.issue("kec-c"), "kec-c")
    dev.publish("edge/kec-c/up/status", b'{"v":"1.0","s":"online","t":1}', qos=1,
                retain=True).wait_for_publish(5)
    dev.disconnect()
    dev.loop_stop()
    tls = broker.pki.issue("central-fleet")
    cfg = BrokerConfig(broker.host, broker.service_port, tls.ca, tls.cert, tls.key)
    since = []
    for _ in range(2):
        store = SqliteStore(tmp_path / "fleet.db")
        svc = FleetService(store)
        svc.start(loops=False)
        sub = FleetSubscriber(svc, cfg)
        sub.start()
        try:
            assert sub.wait_subscribed(10)
            wait_until(lambda s=svc: s.record("kec-c") is not None, what="retained status")
            rec = svc.record("kec-c")
            assert rec is not None and rec.status == "online"
            since.append(rec.status_at)
            svc.flush_once()
        finally:
            sub.stop()
            store.close()
    assert since[0] == since[1]


def test_missing_tls_files_are_named() -> None:
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="--mqtt-cert, --mqtt-key missing"):
        BrokerConfig("localhost", ca=Path("/etc/hosts")).check()
