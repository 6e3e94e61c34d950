"""Both store backends, for real: a SQLite file in WAL mode and a PostgreSQL schema."""

from __future__ import annotations

import random
from pathlib import Path

import psycopg
import pytest

from edge.central.fleet.model import (
    DeviceRecord,
    RejectObs,
    Retention,
    StatusObs,
    TelemetryObs,
    apply,
    samples_to_buckets,
)
from edge.central.fleet.service import FleetService
from edge.central.fleet.store import FleetStore, StoreError, StoreUnavailable, open_store
from edge.central.fleet.store_postgres import PostgresStore
from edge.central.fleet.store_sqlite import SqliteStore
from edge.telemetry.schema import Status, decode_telemetry
from tests.fleet.fleet_support import payload, telemetry

T0 = 1_767_225_600.0  # a multiple of 3600: bucket edges fall on round numbers


def tel_obs(device: str, at: float, **kw: object) -> TelemetryObs:
    raw = payload(**kw)
    return TelemetryObs(device, at, decode_telemetry(raw), raw.decode())


def test_records_round_trip_with_their_telemetry(store: FleetStore) -> None:
    a = apply(None, StatusObs("kec-a", T0, Status("online", sent_at=1), retained=False))
    a = apply(a, tel_obs("kec-a", T0 + 5, backlog_items=4, backlog_bytes=9, uplink="4g",
                         backlog_oldest_age_s=70, cpu_temp_c=51.5, throttled=0x50005))
    b = apply(None, RejectObs("kec-b", T0, "telemetry.invalid", "field 'bn' must be ..."))
    store.save([a, b], [])
    loaded = {r.device_id: r for r in store.load_devices()}
    assert loaded == {"kec-a": a, "kec-b": b}
    t = loaded["kec-a"].telemetry
    assert t is not None and t.uplink == "4g" and t.cpu_temp_c == 51.5 and t.throttled == 0x50005
    assert loaded["kec-b"].telemetry is None and loaded["kec-b"].rejected_count == 1


def test_latest_record_overwrites(store: FleetStore) -> None:
    r = apply(None, tel_obs("kec-a", T0, backlog_items=1))
    store.save([r], [])
    r2 = apply(r, StatusObs("kec-a", T0 + 60, Status("offline", reason="lost"), retained=False))
    store.save([r2], [])
    [back] = store.load_devices()
    assert back.status == "offline" and back.status_reason == "lost"
    assert back.telemetry_count == 1 and back.telemetry_at == T0


def test_history_buckets_merge_in_sql_as_in_python(store: FleetStore) -> None:
    rng = random.Random(7)
    samples = []
    for i in range(300):
        samples.append(tel_obs(
            f"kec-{i % 3}", T0 + rng.uniform(0, 7200),
            backlog_items=rng.randint(0, 50), backlog_bytes=rng.randint(0, 10**10),
            backlog_oldest_age_s=rng.choice([None, rng.randint(0, 10**5)]),
            uplink=rng.choice(["wired", "4g", "none"]),
            disk_free_bytes=rng.choice([None, rng.randint(0, 10**11)]),
            mobile_used_bytes=rng.choice([None, rng.randint(0, 10**10)]),
        ))
    # Written in uneven batches, as the flush loop would, so SQL does the merging.
    res = store.retention.resolutions
    pos = 0
    while pos < len(samples):
        n = rng.randint(1, 40)
        store.save([], samples_to_buckets(samples[pos:pos + n], res))
        pos += n
    expected = {(b.device_id, b.res, b.start): b for b in samples_to_buckets(samples, res)}
    got = {}
    for d in ("kec-0", "kec-1", "kec-2"):
        for r in res:
            for b in store.history(d, r, T0 - 3600, T0 + 3 * 3600):
                got[(b.device_id, b.res, b.start)] = b
    assert got == expected
    assert sum(b.samples for b in got.values() if b.res == 300) == 300


def test_history_is_a_range_oldest_first(store: FleetStore) -> None:
    obs = [tel_obs("kec-a", T0 + i * 300, backlog_items=i) for i in range(12)]
    obs.append(tel_obs("kec-b", T0, backlog_items=99))
    store.save([], samples_to_buckets(obs, [300]))
    got = store.history("kec-a", 300, T0 + 600, T0 + 1800)
    assert [b.start for b in got] == [T0 + 600, T0 + 900, T0 + 1200, T0 + 1500]
    assert [b.backlog_items_max for b in got] == [2, 3, 4, 5]


def test_prune_keeps_each_tier_for_its_own_time(store: FleetStore) -> None:
    old = tel_obs("kec-a", T0 - 3 * 86400)      # past the 5-min tier, inside the 1-h tier
    ancient = tel_obs("kec-a", T0 - 40 * 86400)  # past both
    store.save([], samples_to_buckets([old, ancient, tel_obs("kec-a", T0)], [300, 3600]))
    assert store.prune(T0) == 3
    assert [b.start for b in store.history("kec-a", 300, 0, T0 + 1)] == [T0]
    assert len(store.history("kec-a", 3600, 0, T0 + 1)) == 2
    assert store.prune(T0) == 0


def test_forget_removes_an_office_and_its_history(store: FleetStore) -> None:
    o = tel_obs("kec-a", T0)
    store.save([apply(None, o)], samples_to_buckets([o], [300]))
    assert store.forget("kec-a") is True
    assert store.load_devices() == [] and store.history("kec-a", 300, 0, 2 * T0) == []
    assert store.forget("kec-a") is False


def test_sqlite_is_in_wal_and_survives_reopen(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "db" / "fleet.db")
    assert s.journal_mode == "wal"
    r = apply(None, tel_obs("kec-a", T0))
    s.save([r], [])
    s.close()
    s2 = open_store(f"sqlite://{tmp_path}/db/fleet.db")
    assert s2.load_devices() == [r]
    s2.close()


def test_open_store_refuses_unknown_urls() -> None:
    with pytest.raises(StoreError, match="sqlite:///path"):
        open_store("mysql://x/y")


def test_unreachable_postgres_says_what_to_check(tmp_path: Path) -> None:
    from tests.support.broker import free_port

    url = f"postgresql://postgres:secret-pw@127.0.0.1:{free_port()}/test"
    with pytest.raises(StoreUnavailable, match="server is up") as e:
        PostgresStore(url)
    assert "secret-pw" not in str(e.value)


def test_a_dropped_postgres_connection_loses_no_batch(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    svc = FleetService(store, clock=lambda: T0)
    svc.start(loops=False)
    svc.handle_message("edge/kec-a/up/telemetry", payload(backlog_items=1))
    assert svc.flush_once() == 1
    # The database server kills our session (restart, failover, idle timeout).
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = 'edge-central-fleet'")
    svc.handle_message("edge/kec-b/up/telemetry", payload(backlog_items=2))
    assert svc.flush_once() == 0            # failed, kept
    assert svc.stats.flush_failures == 1 and svc.pending == (1, 1)
    assert svc.flush_once() == 1            # reconnected, written
    assert {r.device_id for r in store.load_devices()} == {"kec-a", "kec-b"}
    assert len(store.history("kec-b", 300, 0, 2 * T0)) == 1
    store.close()


def test_records_decode_once_at_load(store: FleetStore) -> None:
    r = DeviceRecord("kec-a", T0, telemetry_raw=payload(backlog_items=3).decode(),
                     telemetry_at=T0)
    assert r.telemetry == telemetry(backlog_items=3)
    store.save([r], [])
    assert store.load_devices()[0].telemetry == telemetry(backlog_items=3)


def test_retention_picks_the_finest_tier_that_covers_the_span() -> None:
    ret = Retention(((300, 2 * 86400), (3600, 30 * 86400)))
    assert ret.pick(86400) == 300 and ret.pick(7 * 86400) == 3600 and ret.pick(90 * 86400) == 3600


def test_status_snapshot_is_refreshed_only_while_watched(tmp_path: Path) -> None:
    now = [T0]
    svc = FleetService(SqliteStore(tmp_path / "f.db"), clock=lambda: now[0],
                       status_cache_s=60, watch_s=300)
    svc.start(loops=False)
    svc.handle_message("edge/kec-a/up/telemetry", payload())
    assert svc.derive_once() == 0                     # nobody looked yet: no work
    assert [s.state for s in svc.statuses()] == ["online"]
    now[0] += 600                                     # telemetry is old now...
    assert [s.state for s in svc.statuses()] == ["online"]  # ...the snapshot is not re-derived
    assert svc.derive_once() == 1                     # the derive loop's step refreshes it
    assert [s.state for s in svc.statuses()] == ["stale"]
    svc.store.close()
