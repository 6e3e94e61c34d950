"""Thin paho-mqtt adapter: the fleet view's subscription to every office's status and telemetry.

Place in the data flow: broker → here → ``FleetService.handle_message``. Nothing is decided
here: topics are parsed and payloads decoded by ``ingest``, state is kept by the service.
MQTT v5 over TLS with a client certificate (the broker's ACL gives the fleet view's
identity read access to ``edge/+/up/status`` and ``edge/+/up/telemetry`` only). A clean
session on every connect: the retained status messages rebuild the picture, and queued
telemetry from while we were away would be history we no longer want at QoS 0 anyway.
paho's loop thread reconnects with backoff; subscriptions are renewed in ``on_connect``.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.central.fleet.ingest import SUBSCRIPTIONS
from edge.central.fleet.service import FleetService
from edge.errors import ConfigError, RemoteError

__all__ = ["BrokerConfig", "FleetSubscriber", "SubscribeError"]

log = logging.getLogger(__name__)


class SubscribeError(RemoteError):
    key = "fleet.mqtt"


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int = 8883
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    client_id: str = "central-fleet"
    keepalive_s: int = 30
    # Only for a loopback bench or demo broker: plain TCP, no certificate.
    insecure_plain: bool = False

    def check(self) -> None:
        if self.insecure_plain:
            return
        missing = [n for n, p in (("--mqtt-ca", self.ca), ("--mqtt-cert", self.cert),
                                  ("--mqtt-key", self.key)) if p is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)} missing: the fleet view connects with its "
                              "own client certificate from the fleet CA")
        for p in (self.ca, self.cert, self.key):
            assert p is not None
            if not p.is_file():
                raise ConfigError(f"{p}: no such file (TLS file for the MQTT connection)")


class FleetSubscriber:
    def __init__(self, service: FleetService, broker: BrokerConfig) -> None:
        broker.check()
        self.service = service
        self.broker = broker
        self.subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=broker.client_id, protocol=mqtt.MQTTv5)
        if not broker.insecure_plain:
            self.client.tls_set(ca_certs=str(broker.ca), certfile=str(broker.cert),
                                keyfile=str(broker.key), cert_reqs=ssl.CERT_REQUIRED,
                                tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self) -> None:
        """Connect in the background (``connect_async``): a broker that is down at start is
        retried like one that goes away later, rather than stopping the service."""
        self.client.connect_async(self.broker.host, self.broker.port,
                                  keepalive=self.broker.keepalive_s, clean_start=True)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.service.set_connected(False)

    def wait_subscribed(self, timeout: float) -> bool:
        return self.subscribed.wait(timeout)

    # --- paho callbacks (paho's network thread) ---------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    rc: ReasonCode, props: Properties | None) -> None:
        if rc.is_failure:
            log.warning("fleet: broker refused the connection: %s", rc)
            return
        log.info("fleet: connected to %s:%d", self.broker.host, self.broker.port)
        self.service.set_connected(True)
        client.subscribe(list(SUBSCRIPTIONS))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      rcs: list[ReasonCode], props: Properties | None) -> None:
        failed = [str(rc) for rc in rcs if rc.is_failure]
        if failed:
            log.error("fleet: subscription refused (%s): check the broker ACL for %r",
                      ", ".join(failed), self.broker.client_id)
            return
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       rc: ReasonCode, props: Properties | None) -> None:
        self.subscribed.clear()
        self.service.set_connected(False)
        if rc.is_failure:
            log.warning("fleet: disconnected from the broker (%s); reconnecting", rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.service.handle_message(msg.topic, bytes(msg.payload), bool(msg.retain))
