"""The forwarder's one MQTT v5 connection to the central broker: a thin paho-mqtt adapter.

Mutual TLS with the device certificate, client id = device id, ``clean_start = False`` with a
session expiry so receipts published while the office is offline wait at the broker.

Threads: the link thread makes each connection (``connect()``), then hands the socket to
paho's own network thread (``loop_start``) with paho's reconnect switched off, so the engine,
not paho, decides when to reconnect (the reconnect policy stays pure). The engine publishes
only while a connection is up: paho's ``publish`` is safe from another thread only while
paho's network thread runs (otherwise it writes to the TLS socket itself, racing the link
thread), so ``publish`` checks that under a lock and otherwise drops the message — the
custody protocol resends what was not acknowledged end to end.

Dropping a connection (uplink switch, stop) sends a DISCONNECT, but paho ends a connection
only once that packet is written, and it queues behind every chunk already handed to paho.
On a link that just died the socket's send buffer is full and never drains, so paho would
hold the dead connection until keepalive expires (20 s by default; measured across network
namespaces: 17 s from the switch to the reconnect). So a drop waits at most ``DROP_GRACE_S``
for the polite DISCONNECT, then shuts the socket down under paho, which ends its thread at
once; the broker takes the session over when the new connection arrives.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.broker.client import set_nodelay
from edge.forward.config import MqttConfig
from edge.forward.reconnect import Failure

__all__ = ["DROP_GRACE_S", "Connected", "Disconnected", "LinkEvent", "Message", "MqttLink",
           "classify", "set_nodelay"]

log = logging.getLogger("edge.forward.mqtt")

# How long a dropped connection may take to send its DISCONNECT before the socket is shut.
DROP_GRACE_S = 0.25


@dataclass(frozen=True)
class Connected:
    session_present: bool


@dataclass(frozen=True)
class Disconnected:
    kind: Failure
    reason: str
    was_connected: bool


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes


LinkEvent = Connected | Disconnected | Message

_NETWORK_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL,
                   errno.ETIMEDOUT, errno.ENONET, errno.EHOSTDOWN}


def classify(exc: BaseException) -> Failure:
    """Office link down (retry soon) or central side refusing (back off)?"""
    if isinstance(exc, (TimeoutError, socket.timeout, socket.gaierror)):
        return Failure.NETWORK
    if isinstance(exc, (ConnectionRefusedError, ConnectionResetError, ssl.SSLError)):
        return Failure.BROKER
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return Failure.NETWORK
    return Failure.BROKER


def tls_context(mc: MqttConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(mc.ca))
    ctx.load_cert_chain(certfile=str(mc.cert), keyfile=str(mc.key))
    return ctx


class MqttLink:
    def __init__(self, mc: MqttConfig, emit: Callable[[LinkEvent], None], *,
                 will: tuple[str, bytes], subscriptions: list[str], max_inflight: int) -> None:
        self._mc = mc
        self._emit = emit
        self._subscriptions = subscriptions
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                        client_id=mc.client_id, protocol=mqtt.MQTTv5,
                        reconnect_on_failure=False)
        c.tls_set_context(tls_context(mc))
        c.will_set(will[0], will[1], qos=1, retain=True)
        c.max_inflight_messages_set(max_inflight)
        c.max_queued_messages_set(0)
        c.connect_timeout = mc.connect_timeout_s
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c
        self._want = threading.Event()
        self._drop = threading.Event()
        self._stop = threading.Event()
        self._kick = threading.Event()  # drop() or stop() asked: act now, not at the next poll
        self._connack_failure: str | None = None
        self._disconnect_reason: str | None = None
        self._up = False
        self._was_up = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)

    # ------------------------------------------------------------------ engine side
    def start(self) -> None:
        self._thread.start()

    def request_connect(self) -> None:
        self._want.set()

    def drop(self) -> None:
        """Close the connection now (the uplink switched): the engine reconnects at once."""
        self._drop.set()
        self._kick.set()

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        """Clean stop; ``final`` (topic, payload) is published retained first (shutdown
        status, so the fleet view tells a planned stop from a crash)."""
        if final is not None:
            info = self.publish(final[0], final[1], qos=1, retain=True)
            if info is not None:
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout=2.0)
        self._stop.set()
        self._kick.set()
        self._want.set()
        self._thread.join(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                retain: bool = False) -> mqtt.MQTTMessageInfo | None:
        """Queue a message for paho's network thread; None (dropped) when not connected."""
        with self._lock:
            if not self._up:
                return None
            return self.client.publish(topic, payload, qos=qos, retain=retain)

    # ------------------------------------------------------------------ link thread
    def _run(self) -> None:
        mc = self._mc
        while not self._stop.is_set():
            if not self._want.wait(0.5):
                continue
            self._want.clear()
            if self._stop.is_set():
                break
            self._drop.clear()
            self._connack_failure = None
            self._disconnect_reason = None
            self._was_up = False
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = mc.session_expiry_s
            try:
                self.client.connect(mc.host, mc.port, keepalive=mc.keepalive_s,
                                    clean_start=False, properties=props)
            except (OSError, ssl.SSLError) as e:
                self._emit(Disconnected(classify(e), f"connect: {e}", False))
                continue
            set_nodelay(self.client)   # edge.broker.client says why
            self.client.loop_start()  # paho's network thread; it ends when the link does
            thread = self.client._thread
            dropped_at: float | None = None
            while thread is not None and thread.is_alive():
                if dropped_at is None and (self._stop.is_set() or self._drop.is_set()):
                    with self._lock:
                        self._up = False
                    dropped_at = time.monotonic()
                    self.client.disconnect()
                elif dropped_at is not None and time.monotonic() - dropped_at >= DROP_GRACE_S:
                    self._shut_socket()
                if dropped_at is None:
                    self._kick.wait(0.2)
                    self._kick.clear()
                else:
                    thread.join(timeout=0.05)
            self.client.loop_stop()
            with self._lock:
                self._up = False
            was_up = self._was_up
            if self._stop.is_set() or self._drop.is_set():
                reason = "stopping" if self._stop.is_set() else "uplink switched"
                self._emit(Disconnected(Failure.NETWORK, reason, True))
            elif self._connack_failure is not None:
                self._emit(Disconnected(Failure.BROKER,
                                        f"broker refused: {self._connack_failure}", False))
            else:
                self._emit(Disconnected(Failure.NETWORK, "connection lost "
                                        f"({self._disconnect_reason or 'no reason'})", was_up))

    def _shut_socket(self) -> None:
        """End the connection under paho: its next read sees EOF and its thread ends. The
        plain socket's shutdown, not SSLSocket's, which would detach the TLS object while
        paho's thread may be using it."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    rc: ReasonCode, props: Properties | None) -> None:
        if rc.is_failure:
            self._connack_failure = str(rc)
            client.disconnect()
            return
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        with self._lock:
            self._up = True
        self._was_up = True
        self._emit(Connected(bool(flags.session_present)))

    def _on_disconnect(self, client: mqtt.Client, userdata: object,
                       flags: mqtt.DisconnectFlags, rc: ReasonCode,
                       props: Properties | None) -> None:
        with self._lock:
            self._up = False
        self._disconnect_reason = str(rc)
        self._kick.set()  # the link thread notices the end without waiting out its poll

    def _on_message(self, client: mqtt.Client, userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        self._emit(Message(msg.topic, bytes(msg.payload)))
