"""Helpers and fixtures for the fleet view tests: real SQLite files, a real PostgreSQL
schema, a real Mosquitto with TLS client certificates, and telemetry builders.

A uniquely named module (not conftest.py) so test files can import helpers from it without
clashing with other test folders' conftest modules; conftest.py re-exports the fixtures."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from edge.central.fleet.model import Retention
from edge.central.fleet.store import FleetStore
from edge.central.fleet.store_postgres import PostgresStore
from edge.central.fleet.store_sqlite import SqliteStore
from edge.telemetry.schema import Telemetry, encode_telemetry
from tests.support.broker import Broker as SharedBroker
from tests.support.broker import start_broker

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
# The shared broker (tests/support/broker.py: repo config, client certificates, the fleet
# ACL) behind the small surface these tests use.

@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


class _Issuer:
    def __init__(self, broker: SharedBroker) -> None:
        self._broker = broker

    def issue(self, cn: str) -> TlsFiles:
        ident = self._broker.identity(cn)
        return TlsFiles(self._broker.ca_path, ident.cert, ident.key)


@dataclass
class Broker:
    """The shared real broker (repo config: TLS, client certificates, the fleet ACL), with
    the small surface these tests use."""

    host: str
    port: int           # device listener
    service_port: int   # central services' listener (the fleet view connects here)
    pki: _Issuer
    log: Path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with start_broker(tmp_path) as b:
        yield Broker(b.host, b.port, b.services_port, _Issuer(b), b.log_path)

