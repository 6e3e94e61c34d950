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
import itertools
import os
import queue
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.broker import render_broker_config
from edge.pki import (
    RevocationList,
    build_csr,
    build_server_csr,
    create_fleet_ca,
    generate_device_key,
    generate_p256_key,
    save_certificate,
    save_private_key,
    write_crl,
)

__all__ = ["MOSQUITTO", "Broker", "BrokerError", "Identity", "Inbox", "free_port",
           "publish_and_wait", "start_broker", "subscribe_and_wait"]

MOSQUITTO = os.environ.get("EDGE_TEST_MOSQUITTO", "/usr/sbin/mosquitto")
HOST = "127.0.0.1"
START_TIMEOUT = 10.0


class BrokerError(RuntimeError):
    """The test broker did not start, stop or connect as asked; carries its log tail."""


def free_port(host: str = HOST) -> int:
    """A port the kernel just handed out (and took back): free unless someone races us."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Identity:
    """Certificate + key files for one fleet identity, issued by the test broker's CA."""

    name: str
    cert: Path
    key: Path
    serial: int


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


class Broker:
    """One running Mosquitto with the repo's config; see the module docstring.

    Attributes: ``host``, ``port``, ``ca`` (the ``FleetCA``), ``ca_path`` (PEM for clients),
    ``workdir``, ``config_path``, ``crl_path``, ``log_path``, ``persistence_dir``.
    """

    def __init__(self, workdir: Path, *, port: int | None = None,
                 acl_file: Path | None = None, with_crl: bool = True) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.ca = create_fleet_ca("edge test fleet CA")
        self.ca_path = self.workdir / "ca.pem"
        save_certificate(self.ca_path, self.ca.cert)
        self.revocations = RevocationList(self.workdir / "revoked.json")
        self.crl_path: Path | None = self.workdir / "crl.pem" if with_crl else None
        if self.crl_path is not None:
            write_crl(self.crl_path, self.revocations.build_crl(self.ca))
        self._write_server_identity()
        self.persistence_dir = self.workdir / "persist"
        self.log_path = self.workdir / "mosquitto.log"
        self.acl_file = acl_file
        self.config_path = self.render()
        self._identities: dict[str, Identity] = {}
        self._serial = itertools.count()
        self._clients: list[mqtt.Client] = []
        self._proc: subprocess.Popen[bytes] | None = None

    # -- configuration -----------------------------------------------------------------
    def _write_server_identity(self) -> None:
        key = generate_p256_key()
        csr = build_server_csr(key, "localhost")
        cert = self.ca.issue_server_certificate(csr, dns_names=["localhost"],
                                                ip_addresses=[HOST])
        self.server_cert = self.workdir / "server.pem"
        self.server_key = self.workdir / "server.key"
        save_private_key(self.server_key, key)
        save_certificate(self.server_cert, cert)

    def render(self, **overrides: Any) -> Path:
        """(Re)write the config from the repo template; ``overrides`` go to
        ``render_broker_config``. Takes effect on ``reload()`` or ``restart()``."""
        args: dict[str, Any] = {
            "port": self.port,
            "bind_address": self.host,
            "cafile": self.ca_path,
            "certfile": self.server_cert,
            "keyfile": self.server_key,
            "crlfile": self.crl_path,
            "persistence_dir": self.persistence_dir,
            "acl_file": self.acl_file,
            # As root, Mosquitto would drop to "mosquitto" before reading the key in our
            # 0700 temp dir; "root" tells it to stay. As non-root the line has no effect.
            "user": "root" if os.geteuid() == 0 else None,
            "log_dest": "stderr",
        }
        args.update(overrides)
        return render_broker_config(self.workdir, **args)

    # -- identities and clients --------------------------------------------------------
    def identity(self, name: str, *, validity: timedelta | None = None,
                 fresh: bool = False) -> Identity:
        """Cert + key files for ``name`` (device id, ``central-receiver``, a claim id),
        issued through the real device-key → CSR → CA path. Cached unless ``fresh``."""
        if not fresh and name in self._identities:
            return self._identities[name]
        key = generate_device_key()
        cert = self.ca.issue_client_certificate(build_csr(key, name), validity=validity)
        n = next(self._serial)
        ident = Identity(name, self.workdir / f"id-{name}-{n}.pem",
                         self.workdir / f"id-{name}-{n}.key", cert.serial_number)
        save_private_key(ident.key, key)
        save_certificate(ident.cert, cert)
        self._identities[name] = ident
        return ident

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
                ) -> mqtt.Client:
        """A connected client with its network loop running; raises ``BrokerError`` if the
        broker refuses (TLS or CONNACK) so that tests of refusal can assert on it.

        Pass ``on_message`` (e.g. ``Inbox().on_message``) when resuming a session
        (``clean_start=False``): queued messages arrive right after the CONNACK.
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
            c.connect(self.host, self.port, keepalive=30, clean_start=clean_start,
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

    def revoke(self, identity: str | Identity) -> None:
        """Revoke the identity's current certificate, write the CRL and SIGHUP the broker."""
        ident = self.identity(identity) if isinstance(identity, str) else identity
        cert = x509.load_pem_x509_certificate(ident.cert.read_bytes())
        self.revocations.revoke(cert, reason=x509.ReasonFlags.key_compromise)
        if self.crl_path is None:
            raise BrokerError("this broker was started without a CRL")
        write_crl(self.crl_path, self.revocations.build_crl(self.ca))
        self.reload()

    # -- process control ---------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self._proc is None or self._proc.poll() is not None:
            raise BrokerError("the broker is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        """Start Mosquitto and return once its TLS port accepts connections."""
        if self.running:
            raise BrokerError("already running")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config_path)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self._proc.returncode} at start:\n"
                                  f"{self.log()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port),
                                                                        timeout=0.2):
                return
            time.sleep(0.02)
        self.kill()
        raise BrokerError(f"mosquitto did not open port {self.port} in {START_TIMEOUT} s:\n"
                          f"{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no goodbye, no final persistence save (a crash, or a power cut)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Mosquitto saves its persistence database and exits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise BrokerError("mosquitto ignored SIGTERM") from None

    def restart(self) -> None:
        """Clean stop (if running) and start on the same port with the same persistence."""
        self.stop()
        self.start()

    def reload(self, timeout: float = 5.0) -> None:
        """SIGHUP: reload config, ACL, certificates and CRL; returns once Mosquitto has."""
        before = self.log().count("Reloading config")
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.log().count("Reloading config") <= before:
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not log a reload within {timeout} s")
            time.sleep(0.02)

    def close(self) -> None:
        """Disconnect every client made here and stop the broker."""
        for c in self._clients:
            with contextlib.suppress(Exception):
                c.disconnect()
            with contextlib.suppress(Exception):
                c.loop_stop()
        self._clients.clear()
        if self.running:
            with contextlib.suppress(BrokerError):
                self.stop(5)


@contextlib.contextmanager
def start_broker(workdir: Path, **kwargs: Any) -> Iterator[Broker]:
    """A started ``Broker`` in ``workdir``; stopped (and its clients closed) on exit.
    A port taken between ``free_port`` and Mosquitto's bind is retried with another."""
    for attempt in range(3):
        broker = Broker(workdir / f"b{attempt}", **kwargs)
        try:
            broker.start()
        except BrokerError:
            if "Address already in use" in broker.log() and attempt < 2:
                continue
            raise
        break
    try:
        yield broker
    finally:
        broker.close()
