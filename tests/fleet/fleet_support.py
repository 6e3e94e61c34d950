"""Helpers and fixtures for the fleet view tests: real SQLite files, a real PostgreSQL
schema, a real Mosquitto with TLS client certificates, and telemetry builders.

A uniquely named module (not conftest.py) so test files can import helpers from it without
clashing with other test folders' conftest modules; conftest.py re-exports the fixtures."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.central.fleet.model import Retention
from edge.central.fleet.store import FleetStore
from edge.central.fleet.store_postgres import PostgresStore
from edge.central.fleet.store_sqlite import SqliteStore
from edge.telemetry.schema import Telemetry, encode_telemetry

# The machine's PostgreSQL (trust auth). Each test gets its own schema, dropped afterwards.
PG_URL = os.environ.get("EDGE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def telemetry(**kw: Any) -> Telemetry:
    base: dict[str, Any] = dict(sent_at=1_767_225_600, backlog_items=0, backlog_bytes=0,
                                uplink="wired", disk_free_bytes=40 * 10**9,
                                disk_total_bytes=60 * 10**9, uptime_s=3600,
                                programs={"intake": "ok", "forward": "ok"},
                                versions={"edge": "0.1.0"})
    base.update(kw)
    return Telemetry(**base)


def payload(**kw: Any) -> bytes:
    return encode_telemetry(telemetry(**kw))


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"fleet_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL is needed for the fleet store tests at {PG_URL} ({e}); start "
                    "it or point EDGE_TEST_PG_URL at one (trust auth, a database you may use)")
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in PG_URL else "?"
        try:
            yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FleetStore]:
    retention = Retention(((300, 2 * 86400), (3600, 30 * 86400)))
    s: FleetStore
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "fleet.db", retention)
    else:
        s = PostgresStore(request.getfixturevalue("pg_url"), retention)
    try:
        yield s
    finally:
        s.close()


# --- a real Mosquitto with mutual TLS ----------------------------------------------------------
# TEMPORARY: the shared TLS broker fixture (tests/support/broker.py, repo config + ACLs) is
# being built on another branch. Until it is merged this minimal stand-in runs
# /usr/sbin/mosquitto on a free port with client certificates, use_identity_as_username and
# a per-device ACL like production's. The lead will switch these tests to the shared one.

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


class Pki:
    """A throwaway fleet CA (ECDSA P-256) issuing server and client certificates."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(_name("test fleet CA"))
            .issuer_name(_name("test fleet CA")).public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca = root / "ca.pem"
        self.ca.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, server: bool = False) -> TlsFiles:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        b = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        files = TlsFiles(self.ca, self.root / f"{cn}.pem", self.root / f"{cn}.key")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(files.key, key)
        return files


@dataclass
class Broker:
    host: str
    port: int
    pki: Pki
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not os.path.exists(MOSQUITTO):
        pytest.fail(f"{MOSQUITTO} is missing: apt-get install mosquitto (scripts/dev does)")
    pki = Pki(tmp_path / "pki")
    server = pki.issue("localhost", server=True)
    acl = tmp_path / "acl"
    # Devices may publish only under their own certificate's name; the fleet view reads all.
    acl.write_text(
        "user fleet-view\n"
        "topic read edge/+/up/status\n"
        "topic read edge/+/up/telemetry\n"
        "\n"
        "pattern write edge/%u/up/#\n"
    )
    port = free_port()
    log = tmp_path / "mosquitto.log"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        # Running as root, mosquitto would switch to the mosquitto user and then fail to
        # read the keys in pytest's 0700 temp directory.
        "user root\n"
        "per_listener_settings false\n"
        "persistence false\n"
        f"log_dest file {log}\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
        f"listener {port} 127.0.0.1\n"
        f"cafile {pki.ca}\ncertfile {server.cert}\nkeyfile {server.key}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        f"acl_file {acl}\n"
    )
    errors = (tmp_path / "mosquitto.stderr").open("wb")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=errors, stderr=errors)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = (log.read_text() if log.exists() else "") + (
                    tmp_path / "mosquitto.stderr").read_text()
                proc.kill()
                pytest.fail(f"mosquitto did not start on port {port}: {text}")
            time.sleep(0.05)
    try:
        yield Broker("127.0.0.1", port, pki, proc, log)
    finally:
        proc.kill()
        proc.wait()
        errors.close()
