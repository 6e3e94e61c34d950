"""Helpers for the central tests: real sealed recordings, a fleet CA with device certificates,
a central site folder (keys, config, device certificates), ``edge-central receive`` run as a
real process, and a small device-side driver (the custody ``Sender`` over paho).

The driver is test code only (the real forwarder is ``edge forward``): it keeps sealed files
in memory, can corrupt a chunk (with a matching CRC) once, and records what it sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.reasoncodes import ReasonCode

from edge.custody.messages import Alert, Publish, State, decode_down
from edge.custody.receipt import VerifiedReceipt
from edge.custody.sender import (
    GaveUp,
    PublishChunk,
    Receipted,
    Recording,
    Sender,
    SenderConfig,
    SenderOutput,
    VerifyLocal,
)
from edge.pki import FleetCA, build_csr, create_fleet_ca, generate_device_key, save_certificate
from edge.seal import SUITES, Manifest, Sealer, sign_manifest
from edge.seal.keys import write_sealing_keys
from tests.support.broker import Broker
from tests.support.office import REPO, central_keys, write_toml

# --------------------------------------------------------------------------- recordings


@dataclass(frozen=True)
class Sealed:
    device_id: str
    recording_id: str
    plaintext: bytes = field(repr=False)
    sealed: bytes = field(repr=False)
    manifest: bytes = field(repr=False)
    seq: int = 0

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.sealed).digest()

    def recording(self, priority: int = 1) -> Recording:
        return Recording(self.recording_id, self.seq, priority, len(self.sealed), self.sha256,
                         self.manifest)


def plaintext(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def seal(device_id: str, recording_id: str, data: bytes, signer: ec.EllipticCurvePrivateKey,
         *, seq: int = 0, claim_device: str | None = None, header_id: str | None = None,
         segment_size: int = 16384) -> Sealed:
    """Seal ``data`` to the test central key (x25519: quick) and sign the manifest.
    ``claim_device``/``header_id`` make deliberately wrong recordings."""
    import io

    suite = SUITES["x25519"]
    out = io.BytesIO()
    sealer = Sealer(central_keys().public().for_kem("x25519"), suite,
                    header_id or recording_id, segment_size, out)
    sealer.update(data)
    res = sealer.finish()
    m = Manifest(device_id=claim_device or device_id, recording_id=recording_id, seq=seq,
                 plaintext_size=res.plaintext_size, plaintext_sha256=res.plaintext_sha256,
                 sealed_size=res.sealed_size, sealed_sha256=res.sealed_sha256,
                 suite=res.suite, segment_size=res.segment_size,
                 stored_at=datetime.now(UTC).isoformat(), metadata={"workstation": "ws-01"})
    return Sealed(device_id, recording_id, data, out.getvalue(),
                  sign_manifest(m, signer).to_bytes(), seq)


# --------------------------------------------------------------------------- PKI


@dataclass
class Fleet:
    """A fleet CA with device keys; certificates go to ``certs_dir/<device>.crt``."""

    ca: FleetCA
    ca_path: Path
    certs_dir: Path
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path) -> Fleet:
        root.mkdir(parents=True, exist_ok=True)
        ca = create_fleet_ca("central test CA")
        ca_path = root / "fleet-ca.pem"
        save_certificate(ca_path, ca.cert)
        certs = root / "devices"
        certs.mkdir(exist_ok=True)
        return cls(ca, ca_path, certs)

    def enrol(self, device_id: str, key: ec.EllipticCurvePrivateKey | None = None
              ) -> ec.EllipticCurvePrivateKey:
        key = key or generate_device_key()
        cert = self.ca.issue_client_certificate(build_csr(key, device_id))
        save_certificate(self.certs_dir / f"{device_id}.crt", cert)
        self.keys[device_id] = key
        return key


def write_receipt_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


# --------------------------------------------------------------------------- central site


@dataclass
class ReceiverProc:
    proc: subprocess.Popen[bytes]
    log_path: Path
    client_id: str | None
    notify: socket.socket

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the receiver sends READY=1 (sd_notify), i.e. it has subscribed."""
        self.notify.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"receiver exited {self.proc.returncode}:\n{self.log()}")
            try:
                if b"READY=1" in self.notify.recv(4096):
                    return
            except TimeoutError:
                continue
        raise AssertionError(f"receiver not ready within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"receiver ignored SIGTERM:\n{self.log()}") from None
        self.notify.close()
        return self.proc.returncode


@dataclass
class CentralSite:
    """A central folder (config, keys, device certificates) next to a test broker."""

    root: Path
    broker: Broker
    config_path: Path
    data_dir: Path
    certs_dir: Path
    receipt_key: Ed25519PrivateKey
    sealing_key_path: Path
    procs: list[ReceiverProc] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, broker: Broker, **central: Any) -> CentralSite:
        root.mkdir(parents=True, exist_ok=True)
        ident = broker.identity("central-receiver")
        receipt_key = write_receipt_key(root / "receipt.key")
        write_sealing_keys(central_keys(), root / "central-seal.key", root / "central-seal.pub")
        certs = root / "devices"
        certs.mkdir(exist_ok=True)
        config = root / "central.toml"
        write_toml(config, {"central": {
            "data_dir": "custody",              # relative: to the config's folder
            "ca": str(broker.ca_path),
            "cert": str(ident.cert),
            "key": str(ident.key),
            "receipt_key": "receipt.key",
            "sealing_key": "central-seal.key",
            "device_certs_dir": "devices",
            "broker_host": broker.host,
            "broker_port": broker.services_port,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 1.0,
            **central,
        }})
        return cls(root, broker, config, root / "custody", certs, receipt_key,
                   root / "central-seal.key")

    def enrol(self, device_id: str) -> ec.EllipticCurvePrivateKey:
        """Issue the device's broker identity and put its certificate where the receiver
        looks; returns the device key (which signs its manifests)."""
        ident = self.broker.identity(device_id)
        (self.certs_dir / f"{device_id}.crt").write_bytes(ident.cert.read_bytes())
        return load_key(ident.key)

    def start_receiver(self, client_id: str | None = None, *args: str,
                       how: str = "--config") -> ReceiverProc:
        """``how``: "--config" (flag), "env" (``EDGE_CONFIG``, as the systemd unit does) or
        "flags" (no file at all: every setting on the command line)."""
        n = len(self.procs)
        log_path = self.root / f"receiver-{n}.log"
        sock_path = self.root / f"notify-{n}.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(sock_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "PYTHONPATH": str(REPO)}
        env.pop("EDGE_CONFIG", None)
        env.pop("EDGE_CENTRAL_DIR", None)
        cmd = [sys.executable, "-m", "edge.central.cli", "receive", *args]
        if how == "--config":
            cmd += ["--config", str(self.config_path)]
        elif how == "env":
            env["EDGE_CONFIG"] = str(self.config_path)
        else:
            ident = self.broker.identity("central-receiver")
            cmd += ["--data-dir", str(self.data_dir), "--ca", str(self.broker.ca_path),
                    "--cert", str(ident.cert), "--key", str(ident.key),
                    "--receipt-key", str(self.root / "receipt.key"),
                    "--device-certs", str(self.certs_dir),
                    "--broker", f"{self.broker.host}:{self.broker.services_port}"]
        if client_id:
            cmd += ["--client-id", client_id]
        with log_path.open("ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=REPO, start_new_session=True)
        rp = ReceiverProc(proc, log_path, client_id, notify)
        self.procs.append(rp)
        return rp

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            with contextlib.suppress(OSError):
                p.notify.close()


# --------------------------------------------------------------------------- device driver


@dataclass
class Sent:
    at: float
    recording_id: str
    offset: int
    length: int


class DeviceDriver:
    """A device's custody sender over a real MQTT connection, on its own thread."""

    def __init__(self, broker: Broker, device_id: str, receipt_key: Ed25519PrivateKey,
                 config: SenderConfig, *, seed: int = 1) -> None:
        self.device_id = device_id
        self.sender = Sender(device_id, receipt_key.public_key(), config,
                             rng=random.Random(seed))
        self.files: dict[str, Sealed] = {}
        self.receipts: dict[str, VerifiedReceipt] = {}
        self.gave_up: list[GaveUp] = []
        self.alerts: list[Alert] = []
        self.sent: list[Sent] = []
        self.tamper: set[tuple[str, int]] = set()
        self.on_state: Callable[[State], None] | None = None
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.client = broker.client(device_id)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._events.put(("up", None))
        self.client.on_disconnect = lambda c, u, f, rc, p: self._events.put(("down", None))
        self.client.on_message = lambda c, u, m: self._events.put(("msg", (m.topic,
                                                                           bytes(m.payload))))
        self.client.max_inflight_messages_set(config.window_chunks + 4)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name=f"driver-{device_id}",
                                        daemon=True)
        self._thread.start()

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, rc: ReasonCode, p: Any) -> None:
        if not rc.is_failure:
            c.subscribe(f"edge/{self.device_id}/down/custody/#", qos=1)

    def add(self, rec: Sealed) -> None:
        self.files[rec.recording_id] = rec
        self._events.put(("add", rec))

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate():
                    return
            time.sleep(0.02)
        raise AssertionError(f"{self.device_id}: {what} not within {timeout}s; "
                             f"progress {self.sender.progress()}, gave up {self.gave_up}, "
                             f"alerts {self.alerts}")

    def wait_receipts(self, ids: list[str], timeout: float = 30.0) -> None:
        self.wait(lambda: all(r in self.receipts for r in ids), timeout, f"receipts for {ids}")

    def bytes_sent(self, since: float = 0.0, recording_id: str | None = None) -> int:
        with self._lock:
            return sum(s.length for s in self.sent if s.at >= since
                       and recording_id in (None, s.recording_id))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        while not self._stop.is_set():
            deadline = self.sender.next_deadline()
            now = time.monotonic()
            timeout = 0.2 if deadline is None else min(0.2, max(0.0, deadline - now))
            try:
                kind, arg = self._events.get(timeout=timeout)
            except queue.Empty:
                kind, arg = "tick", None
            now = time.monotonic()
            with self._lock:
                if kind == "up":
                    out = self.sender.link_up(now)
                elif kind == "down":
                    out = self.sender.link_down(now)
                elif kind == "add":
                    out = self.sender.enqueue(arg.recording(), now)
                elif kind == "msg":
                    out = self.sender.receive(arg[0], arg[1], now)
                    if self.on_state is not None:
                        _, msg = decode_down(arg[0], arg[1])
                        if isinstance(msg, State):
                            self.on_state(msg)
                else:
                    out = []
                out += self.sender.tick(now)
                self._carry_out(out, now)

    def _carry_out(self, outputs: list[SenderOutput], now: float) -> None:
        work = list(outputs)
        while work:
            out = work.pop(0)
            if isinstance(out, Publish):
                self.client.publish(out.topic, out.payload, qos=out.qos)
            elif isinstance(out, PublishChunk):
                data = self.files[out.recording_id].sealed[out.offset:out.offset + out.length]
                if (out.recording_id, out.offset) in self.tamper:
                    self.tamper.discard((out.recording_id, out.offset))
                    data = bytes([data[0] ^ 0x5A]) + data[1:]   # the CRC will match
                self.client.publish(out.topic, out.frame(data), qos=out.qos)
                self.sent.append(Sent(time.monotonic(), out.recording_id, out.offset,
                                      out.length))
            elif isinstance(out, Receipted):
                self.receipts[out.recording_id] = out.receipt
            elif isinstance(out, VerifyLocal):
                ok = self.files[out.recording_id].sha256 == out.sealed_sha256
                work += self.sender.local_verified(out.recording_id, ok, now)
            elif isinstance(out, GaveUp):
                self.gave_up.append(out)
            elif isinstance(out, Alert):
                self.alerts.append(out)
