"""``edge-central receive``: the MQTT adapter around the custody ``Receiver`` machine.

Place in the data flow: devices → broker → ``$share/central/edge/+/up/custody/#`` → **this
adapter** → ``Receiver`` (edge/custody/receiver.py) → ``CentralStore`` (durable bytes and
receipts) → receipts and States back to ``edge/{device}/down/custody/...``. Several instances
(distinct client ids) share the broker's load and one store.

Threads, and who owns what:

* **network**: paho's own loop thread (``loop_start``; the only thread that touches the TLS
  socket, so publishes from the engine are queued to it), which connects and reconnects
  with our jittered exponential backoff. Its callbacks only put events in the inbox;
  ``on_message`` blocks while the inbox holds more than ``INBOX_BYTES``, which stops
  reading the socket and lets TCP push back on the broker (beyond its queue limits
  Mosquitto drops QoS 1 messages, which the protocol survives: the device's timers resend).
* **engine** (``run``, the caller's thread): the only one that touches the machine. It feeds
  messages and timer ticks to it and carries out its outputs exactly as
  docs/custody-protocol.md §8 says: store actions synchronously through the store, manifest
  checks inline (one signature), publishes through paho. It pings the systemd watchdog, so a
  stuck engine is restarted.
* **verify workers**: hash a completed recording (up to GBs) off the engine thread and post
  the result back as an event. Answers may come back in any order; the machine matches them
  by operation id, and an answer that never comes (I/O error) times out into a reload.

Sessions: with a configured ``client_id`` the broker session survives a restart
(``clean_start`` false, ``session_expiry_s``), so QoS 1 messages queued meanwhile are
delivered when the receiver is back. Mosquitto 2.0 keeps dealing shared-subscription
messages to a disconnected member's session, so an id that will never come back (the
default ``central-receiver-<host>-<pid>``) uses no session at all: it would otherwise hold a
share of the traffic until the session expired.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import ssl
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.broker.client import set_nodelay
from edge.central.checks import check_manifest, verify_recording
from edge.central.devices import DeviceDirectory
from edge.central.settings import CentralSettings, default_client_id
from edge.central.store import CentralStore
from edge.custody.messages import UP, Alert, Publish, subscription
from edge.custody.receiver import (
    CheckManifest,
    CommitRecording,
    Receiver,
    ReceiverOutput,
    StoreAction,
    StoreChunk,
    StoreView,
    VerifyRecording,
    VerifyResult,
    run_store_action,
)
from edge.errors import ConfigError
from edge.health.sdnotify import Notifier
from edge.pki import load_certificate

__all__ = ["INBOX_BYTES", "SHARE_GROUP", "ReceiverApp", "load_receipt_key"]

log = logging.getLogger("edge.central.receive")

SHARE_GROUP = "central"
INBOX_BYTES = 32 * 1024 * 1024        # messages read from the broker but not yet handled
OPS_ALARMS = frozenset({"custody.hash_mismatch", "offer.wrong_device"})


def load_receipt_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key that signs custody receipts (PKCS#8 PEM, not readable by others)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the receipt signing key ({e.strerror}); "
                          "check [central] receipt_key") from None
    if os.stat(path).st_mode & 0o007:
        raise ConfigError(f"receipt signing key {path} is readable by every user: "
                          f"chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: the receipt key must be Ed25519, not "
                          f"{type(key).__name__}")
    return key


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes


@dataclass(frozen=True)
class _Verified:
    action: VerifyRecording
    result: VerifyResult
    signer_cert: bytes | None


@dataclass(frozen=True)
class _Link:
    up: bool
    detail: str


class _Inbox:
    """Events for the engine. Messages count against a byte budget (backpressure on paho's
    thread); internal events (link changes, verification results) never wait."""

    def __init__(self, max_bytes: int) -> None:
        self._cv = threading.Condition()
        self._items: deque[_Message | _Verified | _Link] = deque()
        self._bytes = 0
        self._max = max_bytes
        self.closed = False

    def put_message(self, msg: _Message) -> None:
        with self._cv:
            while self._bytes > self._max and not self.closed:
                self._cv.wait(0.5)
            self._items.append(msg)
            self._bytes += len(msg.payload)
            self._cv.notify_all()

    def put(self, event: _Verified | _Link) -> None:
        with self._cv:
            self._items.append(event)
            self._cv.notify_all()

    def get(self, timeout: float) -> _Message | _Verified | _Link | None:
        with self._cv:
            if not self._items:
                self._cv.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item, _Message):
                self._bytes -= len(item.payload)
                self._cv.notify_all()
            return item

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()


class ReceiverApp:
    """One receiver instance: ``run()`` until ``stop()``."""

    def __init__(self, settings: CentralSettings, *, notifier: Notifier | None = None) -> None:
        settings.require("ca", "cert", "key", "receipt_key", "device_certs_dir", "broker_host")
        assert settings.ca and settings.cert and settings.key and settings.receipt_key
        assert settings.device_certs_dir and settings.broker_host
        for p in (settings.ca, settings.cert, settings.key):
            if not p.is_file():
                raise ConfigError(f"{p}: no such file (TLS file for the broker connection)")
        self.settings = settings
        self.client_id = settings.client_id or default_client_id()
        self.resumable = settings.client_id is not None
        self.notifier = notifier or Notifier()
        receipt_key = load_receipt_key(settings.receipt_key)
        self.devices = DeviceDirectory(settings.device_certs_dir, load_certificate(settings.ca),
                                       settings.crl)
        self.store = CentralStore(settings.data_dir)
        report = self.store.recover()
        if not report.clean:
            log.warning("store recovery: removed partials %s, temp files %s; rolled back half "
                        "commits %s; unknown files left alone %s", report.removed_partials,
                        report.removed_temps, report.rolled_back, report.unknown_files)
        self.machine = Receiver(settings.receiver_config(self.client_id), receipt_key)
        self.stats: Counter[str] = Counter()
        self._inbox = _Inbox(INBOX_BYTES)
        self._stop = threading.Event()
        self._ready = False
        self._attempt = 0
        self._session_present = False
        self._signers: dict[tuple[str, str, int], bytes] = {}
        self._pool = ThreadPoolExecutor(settings.verify_workers,
                                        thread_name_prefix="edge-verify")
        self.client = self._make_client()

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """From a signal handler or another thread: the engine finishes its current step."""
        self._stop.set()
        self._inbox.close()

    def run(self) -> int:
        log.info("receiver %s: store %s, broker %s:%d, %s", self.client_id,
                 self.settings.data_dir, self.settings.broker_host, self.settings.broker_port,
                 f"session kept {self.settings.session_expiry_s}s across restarts"
                 if self.resumable else "no session across restarts (set client_id for one)")
        self._connect()
        next_tick = 0.0
        next_status = 0.0
        try:
            while not self._stop.is_set():
                now = time.time()
                deadline = self.machine.next_deadline()
                wait = min(1.0, max(0.0, (deadline or now + 1.0) - now), max(0.0,
                                                                           next_tick - now))
                event = self._inbox.get(wait)
                if event is not None:
                    self._on_event(event)
                now = time.time()
                if now >= next_tick or (deadline is not None and now >= deadline):
                    self._carry_out(self.machine.tick(now))
                    next_tick = now + 1.0
                if now >= next_status:
                    self.notifier.status(self._status_text())
                    next_status = now + 10.0
                self.notifier.ping()
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        self.notifier.stopping()
        self._inbox.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._stop.set()
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
        self.store.close()
        log.info("receiver %s stopping: %s", self.client_id, self._status_text())

    def _status_text(self) -> str:
        keys = ("messages", "chunks_stored", "commits", "duplicates", "rejects", "alerts")
        return ", ".join(f"{k}={self.stats[k]}" for k in keys) + \
            f", cached={self.machine.cached}"

    # ------------------------------------------------------------------ engine

    def _on_event(self, event: _Message | _Verified | _Link) -> None:
        now = time.time()
        if isinstance(event, _Message):
            self.stats["messages"] += 1
            self._carry_out(self.machine.receive(event.topic, event.payload, now))
        elif isinstance(event, _Verified):
            a = event.action
            if event.result.ok and event.signer_cert is not None:
                if len(self._signers) > 4096:   # answers the machine no longer wanted
                    self._signers.clear()
                self._signers[(a.device_id, a.recording_id, a.generation)] = event.signer_cert
            self._carry_out(self.machine.verified(a, event.result, now))
        elif event.up:
            log.info("connected to the broker (%s)", event.detail)
            if not self._ready:
                self._ready = True
                self.notifier.ready(f"receiving as {self.client_id}")
        else:
            log.warning("broker connection lost (%s); reconnecting", event.detail)

    def _carry_out(self, outputs: list[ReceiverOutput]) -> None:
        work: deque[ReceiverOutput] = deque(outputs)
        while work:
            out = work.popleft()
            if isinstance(out, Publish):
                self.client.publish(out.topic, out.payload, qos=out.qos)
            elif isinstance(out, Alert):
                self._alert(out)
            elif isinstance(out, CheckManifest):
                try:
                    result = check_manifest(self.devices, out.device_id, out.manifest)
                except Exception:   # e.g. the certificate folder unreadable: not the device's
                    log.exception("manifest check of %s/%s failed; the offer is answered "
                                  "after the operation times out", out.device_id,
                                  out.recording_id)
                    continue
                work.extend(self.machine.manifest_checked(out, result, time.time()))
            elif isinstance(out, VerifyRecording):
                self._pool.submit(self._verify, out)
            else:
                view = self._store(out)
                if view is not None:
                    work.extend(self.machine.store_result(out, view, time.time()))

    def _store(self, action: StoreAction) -> StoreView | None:
        """Carry out one store action; None if it failed (logged; the machine's operation
        timeout reloads the recording later)."""
        try:
            if isinstance(action, CommitRecording):
                key = (action.device_id, action.recording_id, action.generation)
                view = self.store.commit(action.device_id, action.recording_id,
                                         action.generation, action.receipt,
                                         signer_cert=self._signers.pop(key, None))
                self._log_commit(action, view)
                return view
            view = run_store_action(self.store, action)
        except Exception:
            log.exception("store: %s of %s/%s failed", type(action).__name__,
                          action.device_id, action.recording_id)
            self.stats["store_errors"] += 1
            return None
        if isinstance(action, StoreChunk):
            self.stats["chunks_stored"] += 1
        return view

    def _log_commit(self, action: CommitRecording, view: StoreView) -> None:
        where = f"{action.device_id}/{action.recording_id}"
        if view.receipt is None:
            log.info("commit of %s refused by the store (generation moved on)", where)
        elif view.receipt == action.receipt:
            self.stats["commits"] += 1
            size = view.offer.sealed_size if view.offer else 0
            log.info("committed %s (%d bytes, generation %d); receipt by %s", where, size,
                     action.generation, self.client_id)
        else:
            self.stats["duplicates"] += 1
            log.info("%s was already committed; answering with the first receipt", where)

    def _alert(self, alert: Alert) -> None:
        self.stats["alerts"] += 1
        if alert.key.startswith(("offer.", "manifest.", "seal.", "verify.")):
            self.stats["rejects"] += 1
        where = "/".join(x for x in (alert.device_id, alert.recording_id) if x) or "-"
        level = logging.ERROR if alert.key in OPS_ALARMS else logging.WARNING
        log.log(level, "ALERT %s %s: %s", alert.key, where, alert.detail)

    def _verify(self, action: VerifyRecording) -> None:
        """On a worker thread."""
        try:
            result, cert = verify_recording(self.store, self.devices, action)
        except Exception:
            log.exception("verification of %s/%s failed", action.device_id,
                          action.recording_id)
            return
        self._inbox.put(_Verified(action, result, cert))

    # ------------------------------------------------------------------ MQTT

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(s.ca), certfile=str(s.cert), keyfile=str(s.key),
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        # Receipts and States are small; allow plenty in flight so acks never wait on acks.
        c.max_inflight_messages_set(64)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message
        return c

    def _connect(self) -> None:
        """Start paho's network thread; it connects in the background and reconnects after
        the delay ``_on_disconnect``/``_on_connect_fail`` set, so a broker that is down at
        start is retried like one that goes away later."""
        s = self.settings
        assert s.broker_host is not None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s if self.resumable else 0
        self._set_reconnect_delay()
        self.client.connect_async(s.broker_host, s.broker_port, keepalive=s.keepalive_s,
                                  clean_start=not self.resumable, properties=props)
        self.client.loop_start()

    def _set_reconnect_delay(self) -> float:
        # paho doubles from min to max on its own, without jitter: pin both to our value.
        delay = self._backoff()
        self.client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]  # floats work
        return delay

    def _backoff(self) -> float:
        """Exponential, capped, with jitter (half to full delay) so that many receivers
        restarted together do not hit the broker in step."""
        s = self.settings
        delay = min(s.reconnect_max_s, s.reconnect_min_s * 2.0 ** min(self._attempt, 30))
        self._attempt += 1
        return delay * random.uniform(0.5, 1.0)

    # paho callbacks (network thread): only hand events to the engine.

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None) -> None:
        if rc.is_failure:
            log.error("broker refused the connection: %s (check the central-receiver "
                      "certificate and the broker's CA/CRL)", rc)
            return
        set_nodelay(client)   # edge.broker.client says why
        self._attempt = 0
        self._session_present = bool(getattr(flags, "session_present", False))
        client.subscribe(subscription(UP, share=SHARE_GROUP), qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      rcs: list[ReasonCode], props: Properties | None) -> None:
        if any(rc.is_failure for rc in rcs):
            log.error("subscription refused (%s): check the broker ACL for central-receiver",
                      ", ".join(str(rc) for rc in rcs))
            return
        resumed = "session resumed" if self._session_present else "new session"
        self._inbox.put(_Link(True, f"{resumed}, subscribed as {self.client_id}"))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Properties | None) -> None:
        if not self._stop.is_set():
            delay = self._set_reconnect_delay()
            self._inbox.put(_Link(False, f"{rc}; next attempt in {delay:.1f}s"))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        delay = self._set_reconnect_delay()
        s = self.settings
        log.warning("cannot connect to %s:%d (unreachable, or TLS refused: check the CA, the "
                    "central-receiver certificate and its key); next attempt in %.1fs",
                    s.broker_host, s.broker_port, delay)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put_message(_Message(msg.topic, bytes(msg.payload)))
