"""The forwarder's MQTT link against the real broker (repo config, TLS, ACL)."""

from __future__ import annotations

import queue
import socket
from pathlib import Path

from edge.forward.config import MqttConfig
from edge.forward.mqtt_link import Connected, LinkEvent, MqttLink
from tests.support.broker import Broker

DEV = "kec-3171-01"


def test_link_switches_nagle_off_so_small_packets_are_not_held_back(broker: Broker,
                                                                    tmp_path: Path) -> None:
    """Offers, PUBACKs for States and the like are small; with Nagle on each one waits for
    the broker's delayed ACK while the custody window stands still (bench/custody_chain.py
    measured 2-3x less goodput)."""
    ident = broker.identity(DEV)
    mc = MqttConfig(host=broker.host, port=broker.port, ca=broker.ca_path, cert=ident.cert,
                    key=ident.key, client_id=DEV, keepalive_s=20, session_expiry_s=0,
                    connect_timeout_s=5.0, receipt_public_key=tmp_path / "unused.pub")
    events: queue.Queue[LinkEvent] = queue.Queue()
    link = MqttLink(mc, events.put, will=(f"edge/{DEV}/up/status", b"offline"),
                    subscriptions=[f"edge/{DEV}/down/custody/#"], max_inflight=20)
    link.start()
    try:
        link.request_connect()
        assert isinstance(events.get(timeout=15), Connected)
        sock = link.client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        link.stop()
