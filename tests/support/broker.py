"""A real Mosquitto broker for integration tests, configured exactly as production.

The broker runs ``/usr/sbin/mosquitto`` with the config rendered from the repo's template
and ACL (``edge.broker``), on a free port of 127.0.0.1, in its own temp directory, with a
throwaway fleet CA made by ``edge.pki``. Tests get identities (cert + key files) from that CA
and paho clients that use them, and can SIGKILL, restart or SIGHUP the broker.

    def test_receipt_reaches_device(broker: Broker) -> None:
        device = broker.connect("kec-3171-01")          # cert CN + client id = device id
        inbox = Inbox.subscribe(device, "edge/kec-3171-01/down/#")
        receiver = broker.connect("central-receiver", client_id="rx-1")
        rc = publish_and_wait(receiver, "edge/kec-3171-01/down/custody/r1", b"ok")
        assert not rc.is_failure                        # PUBACK 0x87 would mean "ACL says no"
        assert inbox.get().payload == b"ok"

The ``broker`` fixture (tests/conftest.py) starts one per test and stops it afterwards;
``start_broker(dir, acl_file=...)`` starts another (e.g. with a probing ACL). For your own
process under test, hand it ``broker.host``, ``broker.port``, ``broker.ca_path`` and the
files of ``broker.identity("kec-...")``.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.broker.local import (
    HOST,
    MOSQUITTO,
    BrokerError,
    Identity,
    LocalBroker,
    free_port,
    start_local_broker,
)

__all__ = ["HOST", "MOSQUITTO", "Broker", "BrokerError", "Identity", "Inbox", "free_port",
           "publish_and_wait", "start_broker", "subscribe_and_wait"]


@dataclass
class Inbox:
    """Messages a paho client received, for assertions: ``get()`` one, ``drain()`` the rest."""

    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(msg)

    @classmethod
    def subscribe(cls, client: mqtt.Client, topic: str, qos: int = 1,
                  timeout: float = 5.0) -> Inbox:
        """Attach to ``client`` and subscribe; returns once the SUBACK has arrived."""
        inbox = cls()
        client.on_message = inbox.on_message
        subscribe_and_wait(client, topic, qos, timeout)
        return inbox

    def get(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout} s") from None

    def drain(self, wait: float = 0.5) -> list[mqtt.MQTTMessage]:
        """Everything that arrives within ``wait`` seconds (proves absence when empty)."""
        out: list[mqtt.MQTTMessage] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out


class _Acks:
    """Collects acks by message id. The ack can arrive on paho's thread before
    ``subscribe()``/``publish()`` has even returned the id, so nothing keys on a variable
    that is assigned after the call."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._acks: dict[int, list[ReasonCode]] = {}

    def put(self, mid: int, codes: list[ReasonCode]) -> None:
        with self._cond:
            self._acks[mid] = codes
            self._cond.notify_all()

    def wait(self, mid: int, timeout: float) -> list[ReasonCode] | None:
        with self._cond:
            self._cond.wait_for(lambda: mid in self._acks, timeout)
            return self._acks.get(mid)


def subscribe_and_wait(client: mqtt.Client, topic: str, qos: int = 1,
                       timeout: float = 5.0) -> list[ReasonCode]:
    """Subscribe and wait for the SUBACK; returns its reason codes (granted QoS or error)."""
    acks = _Acks()
    previous = client.on_subscribe

    def on_subscribe(c: mqtt.Client, userdata: Any, mid: int, rcs: list[ReasonCode],
                     props: Any) -> None:
        acks.put(mid, list(rcs))

    client.on_subscribe = on_subscribe
    try:
        result, mid = client.subscribe(topic, qos)
        codes = acks.wait(mid, timeout) if result == mqtt.MQTT_ERR_SUCCESS else None
    finally:
        client.on_subscribe = previous
    if codes is None:
        raise BrokerError(f"no SUBACK for {topic!r} within {timeout} s")
    return codes


def publish_and_wait(client: mqtt.Client, topic: str, payload: bytes, qos: int = 1,
                     timeout: float = 5.0, **kwargs: Any) -> ReasonCode:
    """Publish at QoS 1 and return the PUBACK reason code (0x87 = not authorized).

    paho's ``wait_for_publish`` returns quietly on timeout (see STYLE.md), so this waits on
    the PUBACK callback itself and fails loudly if none arrives.
    """
    acks = _Acks()
    previous = client.on_publish

    def on_publish(c: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode,
                   props: Any) -> None:
        acks.put(mid, [rc])

    client.on_publish = on_publish
    try:
        info = client.publish(topic, payload, qos=qos, **kwargs)
        codes = acks.wait(info.mid, timeout)
    finally:
        client.on_publish = previous
    if codes is None:
        raise BrokerError(f"no PUBACK for {topic!r} within {timeout} s (rc={info.rc})")
    return codes[0]


class Broker(LocalBroker):
    """The local broker (edge.broker.local) plus paho clients for tests; closing it closes
    every client made here."""

    def __init__(self, workdir: Path, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self._clients: list[mqtt.Client] = []

    def client(self, identity: str | Identity | None, *, client_id: str | None = None,
               ca_path: Path | None = None) -> mqtt.Client:
        """A paho MQTT v5 client with TLS set up for ``identity`` (not yet connected).

        ``identity=None`` makes a client that presents no certificate. The client id
        defaults to the identity's name (the fleet's agreement for devices).
        """
        ident = self.identity(identity) if isinstance(identity, str) else identity
        cid = client_id or (ident.name if ident else "no-certificate")
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(ca_path or self.ca_path),
                  certfile=str(ident.cert) if ident else None,
                  keyfile=str(ident.key) if ident else None,
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        # Quick reconnects keep tests short (after restart(), and when loop_stop() has to
        # wait out paho's back-off after a refusal).
        c.reconnect_delay_set(0.05, 0.5)
        self._clients.append(c)
        return c

    def connect(self, identity: str | Identity | None, *, client_id: str | None = None,
                clean_start: bool = True, session_expiry: int = 0, timeout: float = 5.0,
                ca_path: Path | None = None,
                on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None] | None = None,
                port: int | None = None) -> mqtt.Client:
        """A connected client with its network loop running; raises ``BrokerError`` if the
        broker refuses (TLS or CONNACK) so that tests of refusal can assert on it.

        Pass ``on_message`` (e.g. ``Inbox().on_message``) when resuming a session
        (``clean_start=False``): queued messages arrive right after the CONNACK.
        ``port`` defaults to the identity's listener (``port_for``: services the service
        listener, devices and claims the device listener).
        """
        c = self.client(identity, client_id=client_id, ca_path=ca_path)
        if on_message is not None:
            c.on_message = on_message
        connected = threading.Event()
        failed: list[str] = []

        def on_connect(cl: mqtt.Client, ud: Any, flags: Any, rc: ReasonCode,
                       props: Any) -> None:
            if rc.is_failure:
                failed.append(f"CONNACK {rc}")
            connected.set()

        def on_connect_fail(cl: mqtt.Client, ud: Any) -> None:
            failed.append("connect failed")
            connected.set()

        def on_disconnect(cl: mqtt.Client, ud: Any, flags: Any, rc: ReasonCode,
                          props: Any) -> None:
            if not connected.is_set():
                failed.append(f"disconnected before CONNACK: {rc}")
                connected.set()

        c.on_connect = on_connect
        c.on_connect_fail = on_connect_fail
        c.on_disconnect = on_disconnect
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        try:
            name = identity.name if isinstance(identity, Identity) else identity
            c.connect(self.host, port or self.port_for(name), keepalive=30,
                      clean_start=clean_start,
                      properties=props)
        except (OSError, ssl.SSLError) as e:
            raise BrokerError(f"connect as {identity!r} refused: {e}") from e
        c.loop_start()
        if not connected.wait(timeout):
            failed.append(f"no CONNACK within {timeout} s")
        if failed:
            c.loop_stop()
            with contextlib.suppress(Exception):
                c.disconnect()
            raise BrokerError(f"connect as {identity!r} refused: {failed[0]}")
        return c

    def close(self) -> None:
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.disconnect()
            with contextlib.suppress(Exception):
                c.loop_stop()
        self._clients.clear()
        super().close()


@contextlib.contextmanager
def start_broker(workdir: Path, **kwargs: Any) -> Iterator[Broker]:
    """A started test ``Broker`` in ``workdir``; stopped (and its clients closed) on exit."""
    with start_local_broker(workdir, Broker, **kwargs) as b:
        yield b
