"""Helpers for the provisioning tests: a central folder made by ``edge-central init`` and a
real Mosquitto (tests/support/broker.py) configured with that folder's CA, broker
certificate and CRL, plus the enrolment service running in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.central.ops import Central, CentralLayout, init_central
from edge.central.ops.service import EnrolService
from edge.pki import FleetCA
from tests.support.broker import Broker, Identity, start_broker

__all__ = ["Fleet", "central_fleet", "device_identity", "running_service"]


@dataclass
class Fleet:
    layout: CentralLayout
    broker: Broker
    central: Central  # for the test thread; the service gets its own (as its own process)


@contextlib.contextmanager
def central_fleet(tmp_path: Path) -> Iterator[Fleet]:
    with start_broker(tmp_path / "broker") as broker:
        layout = init_central(tmp_path / "central", broker_host="127.0.0.1",
                              broker_port=broker.port, service_port=broker.services_port,
                              broker_names=["127.0.0.1", "localhost"])
        ca_pem = layout.path("ca_dir") / "ca.pem"
        broker.render(cafile=ca_pem, certfile=layout.path("broker_cert"),
                      keyfile=layout.path("broker_key"), crlfile=layout.path("crl"))
        broker.restart()
        # the fixture's helpers (connect, identity) now speak for the central folder's CA
        broker.ca = FleetCA.load(layout.path("ca_dir"))
        broker.ca_path = ca_pem
        broker.crl_path = layout.path("crl")
        central = Central(layout, reload=broker.reload)
        try:
            yield Fleet(layout, broker, central)
        finally:
            central.close()


@contextlib.contextmanager
def running_service(fleet: Fleet, *, reload: bool = True,
                    clock: Callable[[], float] = time.time) -> Iterator[EnrolService]:
    central = Central(fleet.layout, reload=fleet.broker.reload if reload else None,
                      clock=clock)
    service = EnrolService(central)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), name="enrol-service",
                              daemon=True)
    thread.start()
    try:
        if not service.ready.wait(10):
            raise AssertionError("the enrolment service did not subscribe within 10 s")
        yield service
    finally:
        stop.set()
        thread.join(10)
        central.close()


def device_identity(root: Path, device_id: str) -> Identity:
    """The files provisioning installed under a staging root, as a broker Identity."""
    from cryptography import x509
    cert = root / "etc/edge/device.crt"
    serial = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    return Identity(device_id, cert, root / "etc/edge/device.key", serial)
