"""The fleet service core: in-memory latest state, batched writes, derived status.

Place in the data flow: the MQTT subscriber (paho's network thread) calls
``handle_message`` for every message; that decodes, applies the observation to the
in-memory record and queues the record and a history sample — microseconds, so the network
thread never waits on a database. The flush loop writes the queue to the store once a
``flush_interval_s`` (one transaction per batch); the prune loop drops old history once an
hour; the derive loop keeps a snapshot of every office's derived status fresh (every 2 s)
while someone watches. The web app reads ``statuses()`` (that snapshot, at most 5 s old)
and ``store.history`` for charts.

A failed write keeps the batch: records are re-queued (a newer one for the same office
wins), samples stay queued up to ``max_pending_samples`` — past that the oldest samples are
dropped and counted, never the latest records. Every loop can be switched off
(``start(loops=False)``) so a test runs exactly one ``flush_once()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.central.fleet.derive import OfficeStatus, Thresholds, derive
from edge.central.fleet.directory import Directory
from edge.central.fleet.ingest import Ignored, observe
from edge.central.fleet.model import (
    DeviceRecord,
    Observation,
    RejectObs,
    StatusObs,
    TelemetryObs,
    apply,
    samples_to_buckets,
)
from edge.central.fleet.store import FleetStore
from edge.errors import EdgeError

__all__ = ["FleetService", "Stats"]

log = logging.getLogger(__name__)


@dataclass
class Stats:
    """Service-level counters for /metrics (monotonic since start)."""

    received: Counter[str] = field(default_factory=Counter)    # kind -> messages
    rejected: Counter[str] = field(default_factory=Counter)    # error key -> messages
    ignored: Counter[str] = field(default_factory=Counter)     # reason -> messages
    flushes: int = 0
    flush_failures: int = 0
    flushed_records: int = 0
    flushed_buckets: int = 0
    flush_seconds_total: float = 0.0
    samples_dropped: int = 0
    last_flush_error: str | None = None
    mqtt_connected: bool = False
    mqtt_connects: int = 0


class FleetService:
    def __init__(
        self,
        store: FleetStore,
        thresholds: Thresholds | None = None,
        *,
        directory: Directory | None = None,
        clock: Callable[[], float] = time.time,
        flush_interval_s: float = 1.0,
        prune_interval_s: float = 3600.0,
        max_pending_samples: int = 500_000,
        status_cache_s: float = 5.0,
        status_refresh_s: float = 2.0,
        watch_s: float = 300.0,
    ) -> None:
        self.store = store
        self.thresholds = thresholds or Thresholds()
        self.directory = directory or Directory()
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        self.prune_interval_s = prune_interval_s
        self.max_pending_samples = max_pending_samples
        self.status_cache_s = status_cache_s
        self.status_refresh_s = status_refresh_s
        self.watch_s = watch_s
        self.stats = Stats()
        self.started_at = clock()
        self._lock = threading.Lock()
        self._records: dict[str, DeviceRecord] = {}
        self._dirty: dict[str, DeviceRecord] = {}
        self._samples: deque[TelemetryObs] = deque()
        self._flush_lock = threading.Lock()
        self._cache: tuple[float, list[OfficeStatus]] | None = None  # (monotonic, statuses)
        self._watched_at: float | None = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- input (any thread) ---------------------------------------------------------------

    def load(self) -> int:
        """Fill memory from the store; call once before messages arrive."""
        records = self.store.load_devices()
        with self._lock:
            self._records = {r.device_id: r for r in records}
        return len(records)

    def handle_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        self.submit(observe(topic, payload, self.clock(), retained))

    def submit(self, obs: Observation | Ignored) -> None:
        if isinstance(obs, Ignored):
            with self._lock:
                self.stats.ignored[obs.reason] += 1
            return
        with self._lock:
            if isinstance(obs, TelemetryObs):
                self.stats.received["telemetry"] += 1
                self._samples.append(obs)
                if len(self._samples) > self.max_pending_samples:
                    self._samples.popleft()
                    self.stats.samples_dropped += 1
            elif isinstance(obs, StatusObs):
                self.stats.received["status"] += 1
            elif isinstance(obs, RejectObs):
                self.stats.rejected[obs.key] += 1
            rec = apply(self._records.get(obs.device_id), obs)
            self._records[obs.device_id] = rec
            self._dirty[obs.device_id] = rec

    def set_connected(self, connected: bool) -> None:
        with self._lock:
            self.stats.mqtt_connected = connected
            if connected:
                self.stats.mqtt_connects += 1

    # --- output (any thread) --------------------------------------------------------------

    def records(self) -> list[DeviceRecord]:
        with self._lock:
            return list(self._records.values())

    def record(self, device_id: str) -> DeviceRecord | None:
        with self._lock:
            return self._records.get(device_id)

    def statuses(self) -> list[OfficeStatus]:
        """Every office's derived status, at most ``status_cache_s`` old.

        Deriving 7,000 offices costs ~0.1-0.2 s of CPU, too much to pay on each dashboard
        request, so requests read a snapshot. While someone watches (a request or a scrape in
        the last ``watch_s``), the derive loop refreshes it every ``status_refresh_s``;
        otherwise the first request after a quiet spell derives it on the spot.
        """
        mono = time.monotonic()
        with self._lock:
            self._watched_at = mono
            cached = self._cache
        if cached is not None and mono - cached[0] < self.status_cache_s:
            return cached[1]
        return self._refresh_statuses()

    def _refresh_statuses(self) -> list[OfficeStatus]:
        with self._refresh_lock:
            records = self.records()
            now = self.clock()
            out = [derive(r, now, self.thresholds) for r in records]
            with self._lock:
                self._cache = (time.monotonic(), out)
            return out

    def derive_once(self) -> int:
        """The derive loop's step: refresh the snapshot while someone is watching."""
        with self._lock:
            watched = self._watched_at is not None and (
                time.monotonic() - self._watched_at < self.watch_s)
        if not watched:
            return 0
        return len(self._refresh_statuses())

    def status(self, device_id: str) -> OfficeStatus | None:
        rec = self.record(device_id)
        return None if rec is None else derive(rec, self.clock(), self.thresholds)

    @property
    def pending(self) -> tuple[int, int]:
        """(records, samples) waiting for the next flush."""
        with self._lock:
            return len(self._dirty), len(self._samples)

    # --- background steps -----------------------------------------------------------------

    def flush_once(self) -> int:
        """Write what is queued; return the number of records written (0 on failure)."""
        with self._flush_lock:
            with self._lock:
                dirty, self._dirty = self._dirty, {}
                samples, self._samples = self._samples, deque()
            if not dirty and not samples:
                return 0
            t0 = time.perf_counter()
            buckets = samples_to_buckets(samples, self.store.retention.resolutions)
            try:
                self.store.save(list(dirty.values()), buckets)
            except EdgeError as e:
                with self._lock:
                    # Put the batch back; records that changed meanwhile are newer: keep them.
                    for k, v in dirty.items():
                        self._dirty.setdefault(k, v)
                    samples.extend(self._samples)
                    while len(samples) > self.max_pending_samples:
                        samples.popleft()
                        self.stats.samples_dropped += 1
                    self._samples = samples
                    self.stats.flush_failures += 1
                    self.stats.last_flush_error = f"{e.key}: {e.message}"
                log.warning("fleet: store write failed, will retry: %s", e.message)
                return 0
            with self._lock:
                self.stats.flushes += 1
                self.stats.flushed_records += len(dirty)
                self.stats.flushed_buckets += len(buckets)
                self.stats.flush_seconds_total += time.perf_counter() - t0
                self.stats.last_flush_error = None
            return len(dirty)

    def prune_once(self) -> int:
        try:
            return self.store.prune(self.clock())
        except EdgeError as e:
            log.warning("fleet: history prune failed: %s", e.message)
            return 0

    def forget(self, device_id: str) -> bool:
        with self._lock:
            known = self._records.pop(device_id, None) is not None
            self._dirty.pop(device_id, None)
        return self.store.forget(device_id) or known

    def start(self, loops: bool = True) -> None:
        self.load()
        if not loops:
            return
        self._stop.clear()
        for name, step, every in (("fleet-flush", self.flush_once, self.flush_interval_s),
                                  ("fleet-prune", self.prune_once, self.prune_interval_s),
                                  ("fleet-derive", self.derive_once, self.status_refresh_s)):
            t = threading.Thread(target=self._loop, args=(step, every), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _loop(self, step: Callable[[], int], every: float) -> None:
        while not self._stop.wait(every):
            try:
                step()
            except Exception:  # a loop that dies silently would freeze the fleet view
                log.exception("fleet: background step failed")

    def stop(self) -> None:
        """Stop the loops and write what is still queued."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()
        self.flush_once()
