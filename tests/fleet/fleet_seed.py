"""A small fleet with one office in each interesting condition, fed through the real ingest
path (topic + payload bytes), plus a day of history for one office. Also used to serve the
dashboard for the browser test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from edge.central.fleet.derive import Thresholds
from edge.central.fleet.directory import Directory, Office
from edge.central.fleet.service import FleetService
from edge.central.fleet.store_sqlite import SqliteStore
from edge.central.fleet.web import create_app
from edge.telemetry.schema import last_will, online_status
from tests.fleet.fleet_support import payload
from tests.support.broker import free_port

NOW = 1_767_225_600.0 + 12 * 3600  # a fixed "now" so pages and counts are reproducible

OFFICES = {
    "kec-wired-ok": Office("Kecamatan Menteng", "DKI Jakarta"),
    "kec-offline": Office("Kecamatan Tanah Abang", "DKI Jakarta"),
    "kec-stale": Office("Kecamatan Ubud", "Bali"),
    "kec-on-4g": Office("Kecamatan Kuta", "Bali"),
    "kec-late": Office("Kecamatan Lembang", "Jawa Barat"),
    "kec-disk": Office("Kecamatan Bantul", "DI Yogyakarta"),
}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _send(svc: FleetService, clock: Clock, at: float, device: str, kind: str,
          data: bytes, retained: bool = False) -> None:
    clock.t = at
    svc.handle_message(f"edge/{device}/up/{kind}", data, retained)


def seed(svc: FleetService, clock: Clock, fillers: int = 0) -> None:
    n = NOW
    for d in OFFICES:
        _send(svc, clock, n - 86400, d, "status", online_status(n - 86400))
    # A day of history for kec-on-4g: wired until 6 h ago, then 4G, backlog building up.
    for i in range(24 * 12):
        at = n - 86400 + (i + 1) * 300 - 60
        on_4g = at >= n - 6 * 3600
        items = 0 if not on_4g else int((at - (n - 6 * 3600)) / 600)
        _send(svc, clock, at, "kec-on-4g", "telemetry", payload(
            uplink="4g" if on_4g else "wired", backlog_items=items,
            backlog_bytes=items * 150_000_000, backlog_oldest_age_s=1200 if items else None,
            mobile_used_bytes=8_500_000_000, mobile_budget_bytes=10_000_000_000,
            disk_free_bytes=40_000_000_000 - items * 150_000_000))
    _send(svc, clock, n - 30, "kec-wired-ok", "telemetry", payload())
    _send(svc, clock, n - 3 * 3600, "kec-offline", "telemetry", payload(backlog_items=2,
          backlog_bytes=3 * 10**8, backlog_oldest_age_s=600))
    _send(svc, clock, n - 2 * 3600, "kec-offline", "status", last_will())
    _send(svc, clock, n - 20 * 60, "kec-stale", "telemetry", payload())
    _send(svc, clock, n - 45, "kec-late", "telemetry", payload(
        backlog_items=31, backlog_bytes=31 * 150_000_000, backlog_oldest_age_s=5 * 3600,
        throttled=0x50005))
    _send(svc, clock, n - 10, "kec-disk", "telemetry", payload(
        disk_free_bytes=900_000_000, disk_total_bytes=30_000_000_000,
        programs={"intake": "ok", "forward": "stale"}, errors=("spool.full",)))
    for i in range(fillers):
        d = f"kec-{i:04d}"
        _send(svc, clock, n - 600, d, "status", online_status(n - 600))
        _send(svc, clock, n - (i % 50), d, "telemetry", payload(backlog_items=i % 3))
    clock.t = n
    svc.flush_once()


@contextmanager
def serve_fleet(tmp_path: Path, fillers: int = 0,
                **svc_kw: Any) -> Iterator[tuple[str, FleetService]]:
    """The seeded fleet view on a real loopback socket (uvicorn in a thread)."""
    clock = Clock(NOW)
    store = SqliteStore(tmp_path / "fleet.db")
    svc = FleetService(store, Thresholds(), directory=Directory(dict(OFFICES)), clock=clock,
                       **svc_kw)
    svc.start(loops=False)
    seed(svc, clock, fillers)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", svc
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()
