"""An office and the central site wired together for end-to-end tests: the repo's broker
config, a real `edge-central receive` process, and an office (intake + forwarder processes)
whose device certificate comes from the broker's fleet CA."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.custody.receipt import verify_receipt
from edge.pki import save_certificate
from tests.support.broker import Broker
from tests.support.office import REPO, Office, make_office

FAST_CUSTODY = {"offer_timeout_s": 2.0, "progress_timeout_s": 3.0, "receipt_timeout_s": 3.0,
                "backoff_max_s": 5.0}


@dataclass
class Central:
    root: Path
    broker: Broker
    receipt_key: Ed25519PrivateKey
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # prefix for the receiver's command line, e.g. ["ip", "netns", "exec", "central"]
    launcher: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "custody"

    @property
    def device_certs(self) -> Path:
        return self.root / "devices"

    def start_receiver(self, client_id: str = "central-receiver-t1") -> subprocess.Popen[bytes]:
        ident = self.broker.identity("central-receiver")
        log = (self.root / f"{client_id}.log").open("ab")
        p = subprocess.Popen(
            [*self.launcher, sys.executable, "-m", "edge.central.cli", "receive",
             "--data-dir", str(self.data_dir), "--ca", str(self.broker.ca_path),
             "--cert", str(ident.cert), "--key", str(ident.key),
             "--receipt-key", str(self.root / "receipt.key"),
             "--device-certs", str(self.device_certs),
             "--broker", f"{self.broker.host}:{self.broker.services_port}",
             "--client-id", client_id],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ))
        self.procs.append(p)
        return p

    def logs(self) -> str:
        return "\n".join(f.read_text()[-2000:] for f in self.root.glob("*.log"))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    def held(self) -> list[dict[str, Any]]:
        out = subprocess.run([sys.executable, "-m", "edge.central.cli", "list", "--json",
                              "--data-dir", str(self.data_dir)],
                             capture_output=True, text=True, cwd=REPO, check=True)
        doc: list[dict[str, Any]] = json.loads(out.stdout)
        return doc


def make_central(root: Path, broker: Broker) -> Central:
    root.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    (root / "receipt.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (root / "receipt.key").chmod(0o600)
    (root / "devices").mkdir(exist_ok=True)
    return Central(root, broker, key)


def make_chain_office(root: Path, central: Central, device_id: str = "kec-e2e-01",
                      custody: dict[str, Any] | None = None,
                      forward: dict[str, Any] | None = None,
                      extra: dict[str, dict[str, Any]] | None = None, **kw: Any) -> Office:
    """``extra`` adds config tables or keys (e.g. ``{"uplink": {...}, "mqtt": {...}}``)."""
    broker = central.broker
    ident = broker.identity(device_id)
    root.mkdir(parents=True, exist_ok=True)
    pub = root / "central-receipt.pub"
    pub.write_bytes(central.receipt_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    tables: dict[str, dict[str, Any]] = {
        "identity": {"cert": str(ident.cert), "ca": str(broker.ca_path)},
        "mqtt": {"host": broker.host, "port": broker.port, "receipt_public_key": str(pub),
                 "keepalive_s": 5, "connect_timeout_s": 3},
        "forward": {"telemetry_interval_s": 30, "reconnect_quick_s": 0.2,
                    "reconnect_base_s": 0.2, "reconnect_max_s": 2.0, **(forward or {})},
        "forward.custody": {**FAST_CUSTODY, **(custody or {})},
        "panel": {"programs": ["intake", "forward"]},
    }
    for name, values in (extra or {}).items():
        tables.setdefault(name, {}).update(values)
    office = make_office(root, device_id=device_id, extra=tables, **kw)
    # the device's identity key must be the one its certificate was issued for
    (root / "device.key").write_bytes(ident.key.read_bytes())
    from edge.pki import load_certificate
    save_certificate(central.device_certs / f"{device_id}.crt", load_certificate(ident.cert))
    return office


def spool_rows(office: Office) -> list[dict[str, Any]]:
    conn = sqlite3.connect(office.config.spool.dir / "spool.db")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM recordings ORDER BY seq")]
    conn.close()
    return rows


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
               on_fail: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{on_fail()}")


def all_purged(office: Office) -> bool:
    rows = spool_rows(office)
    return bool(rows) and all(r["state"] == "purged" for r in rows)


def check_removals_have_valid_receipts(office: Office, central: Central) -> int:
    """Every local removal is backed by a receipt that verifies with the central key and names
    this device, this recording and these sealed bytes."""
    n = 0
    for r in spool_rows(office):
        if r["state"] != "purged":
            continue
        verify_receipt(central.receipt_key.public_key(), r["receipt"],
                       office.config.device.id, r["recording_id"],
                       bytes.fromhex(r["sealed_sha256"]),
                       expect_sealed_size=r["sealed_size"])
        n += 1
    return n


def upload(office: Office, rid: str, body: bytes, client: httpx.Client | None = None
           ) -> int:
    c = client or httpx.Client(timeout=60)
    r = c.put(f"{office.url}/v1/recordings/{rid}", content=body, headers=office.auth)
    return int(r.status_code)
