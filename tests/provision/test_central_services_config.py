"""The central services started the way their systemd units start them: from the
``central.toml`` that ``edge-central init`` writes, nothing else. They must find the broker's
service listener, the fleet CA and their own identities there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge.telemetry.schema import online_status
from tests.fleet.fleet_support import payload
from tests.provision.provision_support import Fleet, central_fleet
from tests.support.broker import free_port, publish_and_wait


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with central_fleet(tmp_path) as f:
        yield f


def test_fleet_view_runs_from_central_toml_alone(fleet: Fleet, tmp_path: Path) -> None:
    """As edge-central-fleet.service runs it: `edge-central fleet serve` with EDGE_CONFIG."""
    port = free_port()
    db = tmp_path / "fleet.db"
    env = {**os.environ, "EDGE_CONFIG": str(fleet.layout.root / "central.toml")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.central.cli", "fleet", "serve", "--store", f"sqlite://{db}",
         "--listen", f"127.0.0.1:{port}", "--flush-interval", "0.2",
         "--client-id", "fleet-a"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        device = fleet.broker.connect("kec-toml-01")
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            publish_and_wait(device, "edge/kec-toml-01/up/status", online_status(time.time()))
            publish_and_wait(device, "edge/kec-toml-01/up/telemetry", payload(backlog_items=5))
            try:
                r = httpx.get(url + "/api/v1/offices/kec-toml-01", timeout=2)
                if r.status_code == 200 and r.json()["backlog"]["items"] == 5:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the fleet view never showed the office"
            time.sleep(0.3)
        # it came in on the central services' listener: only there does a client keep a
        # client id other than its certificate's CN
        assert fleet.layout.services_port == fleet.broker.service_port
        assert "as fleet-a (" in fleet.broker.log()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_fleet_view_without_broker_settings_says_what_to_give(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_CONFIG", "EDGE_CENTRAL_DIR")}
    r = subprocess.run([sys.executable, "-m", "edge.central.cli", "fleet", "serve",
                        "--config", str(tmp_path / "nope.toml")],
                       capture_output=True, text=True, env=env)
    assert r.returncode != 0
    assert "nope.toml: no such file" in r.stderr
