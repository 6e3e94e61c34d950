"""``edge-central enrol-service``: the central end of the one-time claim channel.

Place in the data flow: connects to the central broker as ``central-enrol`` (the only
identity that may read ``edge/claim/+/up`` and write ``edge/claim/+/down``), takes each
device's request, lets ``Central.handle`` decide and sign, and answers on the claim's down
topic. A thin adapter: paho's network thread only queues messages; the caller's thread
(``run`` or ``step``) does the work, so a slow CA signature or broker reload never stalls
MQTT keep-alives.

The session is persistent (clean start off, 1 h expiry), so a request published while the
service restarts waits at the broker and is answered when it comes back. An answer is
published at QoS 1; if it is lost, the device asks again with the same key and gets the
same certificates (``Resend``).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.central.ops.authority import Central
from edge.central.ops.errors import OpsError
from edge.errors import EdgeError
from edge.provision.messages import (
    EnrolAnswer,
    EnrolRequest,
    MessageError,
    claim_down_topic,
    claim_id_from_topic,
)

__all__ = ["CLAIM_UP_FILTER", "ENROL_IDENTITY", "EnrolService"]

log = logging.getLogger("edge.central.enrol")

ENROL_IDENTITY = "central-enrol"
CLAIM_UP_FILTER = "edge/claim/+/up"
SESSION_EXPIRY_S = 3600


class EnrolService:
    def __init__(self, central: Central, *, host: str | None = None, port: int | None = None,
                 client_id: str = ENROL_IDENTITY) -> None:
        self.central = central
        self.host = host or central.layout.services_host
        self.port = port or central.layout.services_port
        self.client_id = client_id
        self.inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.ready = threading.Event()
        self.answered = 0
        self._client: mqtt.Client | None = None
        self._sub_mid: int | None = None

    # -- paho callbacks (network thread): record, never work -----------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Any) -> None:
        if rc.is_failure:
            log.error("broker refused central-enrol: %s", rc)
            return
        _, self._sub_mid = client.subscribe(CLAIM_UP_FILTER, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      rcs: list[ReasonCode], props: Any) -> None:
        if mid == self._sub_mid and rcs and not rcs[0].is_failure:
            self.ready.set()
            log.info("listening on %s at %s:%d", CLAIM_UP_FILTER, self.host, self.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Any) -> None:
        self.ready.clear()
        log.warning("disconnected from the broker (%s); paho reconnects", rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(msg)

    # -- connection --------------------------------------------------------------------
    def connect(self, timeout: float = 15.0) -> None:
        cert, key = self.central.service_identity(ENROL_IDENTITY)
        ca_path = self.central.layout.path("ca_dir") / "ca.pem"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(ca_path), certfile=str(cert), keyfile=str(key),
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            c.connect(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        except (OSError, ssl.SSLError) as e:
            raise OpsError(f"cannot reach the broker at {self.host}:{self.port} as "
                           f"central-enrol ({e}); check [broker] in central.toml and that "
                           "the broker runs", key="central.broker_unreachable") from e
        c.loop_start()
        self._client = c
        if not self.ready.wait(timeout):
            self.close()
            raise OpsError(f"the broker at {self.host}:{self.port} did not accept "
                           f"central-enrol's subscription within {timeout:g} s (refused "
                           "certificate? see the broker log)", key="central.broker_refused")

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    # -- work (caller's thread) --------------------------------------------------------
    def step(self, timeout: float = 1.0) -> bool:
        """Answer at most one request; False if none came within ``timeout``."""
        try:
            msg = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return False
        claim_id = claim_id_from_topic(msg.topic)
        if claim_id is None:
            log.warning("ignored a message on %r (not a claim topic)", msg.topic)
            return True
        try:
            request = EnrolRequest.decode(bytes(msg.payload))
        except MessageError as e:
            answer = EnrolAnswer("", reason="enrol.bad_request", message=e.message)
        else:
            try:
                answer = self.central.handle(claim_id, request)
            except EdgeError as e:
                # Our own fault (CA key unreadable, disk full): tell the device to retry
                # later rather than leave it waiting, and keep serving.
                log.error("claim %s failed: %s: %s", claim_id, e.key, e.message)
                answer = EnrolAnswer(request.request_id, reason="enrol.central_error",
                                     message="the central enrolment service failed to answer "
                                             f"({e.key}); try again in a few minutes")
        self._publish(claim_down_topic(claim_id), answer.encode())
        self.answered += 1
        return True

    def _publish(self, topic: str, payload: bytes) -> None:
        if self._client is None:
            raise OpsError("not connected", key="central.broker_unreachable")
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("answer on %s not sent now (rc=%s); the device will ask again",
                        topic, info.rc)

    def run(self, stop: threading.Event) -> int:
        done = self.central.reconcile()
        if done:
            log.info("revoked %d finished claim(s) left from before", len(done))
        self.connect()
        try:
            while not stop.is_set():
                self.step(timeout=0.5)
        finally:
            self.close()
        return 0
