"""Derived office status: the words central ops act on."""

from __future__ import annotations

from edge.central.fleet.derive import (
    OFFLINE,
    ONLINE,
    STALE,
    UNKNOWN,
    Thresholds,
    derive,
    human_age,
)
from edge.central.fleet.ingest import Ignored, observe, parse_topic
from edge.central.fleet.model import (
    DeviceRecord,
    RejectObs,
    StatusObs,
    TelemetryObs,
    apply,
)
from edge.telemetry.schema import Status, last_will, online_status, shutdown_status
from tests.fleet.fleet_support import payload, telemetry

T0 = 1_000_000.0
TH = Thresholds(interval_s=60, stale_intervals=3)


def rec_with(*messages: tuple[float, str, bytes]) -> DeviceRecord:
    r = None
    for at, kind, data in messages:
        obs = observe(f"edge/kec-a/up/{kind}", data, at)
        assert not isinstance(obs, Ignored)
        r = apply(r, obs)
    assert r is not None
    return r


def test_online_while_telemetry_is_fresh_then_stale() -> None:
    r = rec_with((T0, "status", online_status(T0)), (T0 + 1, "telemetry", payload()))
    assert derive(r, T0 + 100, TH).state == ONLINE
    assert derive(r, T0 + 181, TH).state == ONLINE
    s = derive(r, T0 + 182, TH)
    assert s.state == STALE and s.since == T0 + 181 and s.severity == 2
    assert "no telemetry" in s.conditions


def test_just_connected_gets_one_window_for_its_first_report() -> None:
    r = rec_with((T0, "status", online_status(T0)))
    assert derive(r, T0 + 170, TH).state == ONLINE
    assert derive(r, T0 + 200, TH).state == STALE


def test_last_will_means_offline_with_the_reason() -> None:
    r = rec_with((T0, "telemetry", payload()), (T0 + 30, "status", last_will()))
    s = derive(r, T0 + 31, TH)
    assert s.state == OFFLINE and s.since == T0 + 30
    assert s.conditions[0] == "offline (power or link lost)"
    r2 = rec_with((T0, "status", shutdown_status(T0)))
    assert derive(r2, T0 + 1, TH).conditions[0] == "offline (shut down)"


def test_telemetry_after_offline_wins() -> None:
    r = rec_with((T0, "status", last_will()), (T0 + 5, "telemetry", payload()))
    assert derive(r, T0 + 6, TH).state == ONLINE


def test_retained_replay_does_not_reset_since() -> None:
    r = apply(None, StatusObs("kec-a", T0, Status("online"), retained=False))
    r = apply(r, StatusObs("kec-a", T0 + 5000, Status("online"), retained=True))
    assert r.status_at == T0
    r = apply(r, StatusObs("kec-a", T0 + 6000, Status("offline", reason="lost"), retained=True))
    assert r.status == "offline" and r.status_at == T0 + 6000


def test_only_refused_messages_is_unknown() -> None:
    r = apply(None, RejectObs("kec-a", T0, "telemetry.invalid", "bad"))
    s = derive(r, T0, TH)
    assert s.state == UNKNOWN and "only bad messages" in s.conditions and s.severity == 1


def test_on_4g_is_a_warning_and_named() -> None:
    r = rec_with((T0, "telemetry", payload(uplink="4g")))
    s = derive(r, T0 + 10, TH)
    assert s.on_4g and s.severity == 1 and s.conditions == ("on 4G",)
    # A silent office is not "on 4G" any more: we do not know what it is on.
    assert not derive(rec_with((T0, "status", last_will())), T0, TH).on_4g


def test_backlog_age_keeps_growing_while_silent() -> None:
    r = rec_with((T0, "telemetry", payload(backlog_items=5, backlog_oldest_age_s=3000)))
    s = derive(r, T0 + 60, TH)
    assert s.backlog_age_s == 3060 and not s.backlog_late and s.severity == 0
    s = derive(r, T0 + 600, TH)
    assert s.backlog_late and "backlog 1 h old" in s.conditions and s.severity == 2  # stale too
    s = derive(r, T0 + 4 * 3600, TH)
    assert "backlog 4 h 50 min old" in s.conditions


def test_empty_backlog_has_no_age() -> None:
    r = rec_with((T0, "telemetry", payload(backlog_items=0, backlog_oldest_age_s=None)))
    assert derive(r, T0, TH).backlog_age_s is None


def test_disk_low_by_bytes_or_fraction() -> None:
    low = rec_with((T0, "telemetry", payload(disk_free_bytes=10**9, disk_total_bytes=None)))
    assert derive(low, T0, TH).disk_low
    big = rec_with((T0, "telemetry", payload(disk_free_bytes=40 * 10**9,
                                             disk_total_bytes=1000 * 10**9)))
    s = derive(big, T0, TH)
    assert s.disk_low and "disk low" in s.conditions and s.severity == 2
    ok = rec_with((T0, "telemetry", payload(disk_free_bytes=40 * 10**9,
                                            disk_total_bytes=60 * 10**9)))
    assert not derive(ok, T0, TH).disk_low


def test_mobile_budget_warn_and_over() -> None:
    def at(used: int) -> tuple[bool, bool, tuple[str, ...]]:
        r = rec_with((T0, "telemetry", payload(mobile_used_bytes=used,
                                               mobile_budget_bytes=1000)))
        s = derive(r, T0, TH)
        return s.mobile_warn, s.mobile_over, s.conditions

    assert at(500) == (False, False, ())
    assert at(850) == (True, False, ("4G budget used 85%",))
    assert at(1200) == (True, True, ("4G budget used 120%",))


def test_power_programs_and_errors_are_named() -> None:
    r = rec_with((T0, "telemetry", payload(throttled=0x50005, errors=("spool.full",),
                                           programs={"intake": "ok", "forward": "stale"})))
    s = derive(r, T0, TH)
    assert s.stale_programs == ("forward",)
    assert s.conditions == ("stale: forward", "under-voltage now", "throttled now",
                            "errors: spool.full")
    assert s.severity == 2


def test_no_uplink_while_reporting_is_critical() -> None:
    # Reported over a moment of connectivity, e.g. right after failover.
    r = rec_with((T0, "telemetry", payload(uplink="none")))
    assert "no uplink" in derive(r, T0, TH).conditions


def test_refused_message_after_good_ones_is_flagged() -> None:
    r = rec_with((T0, "telemetry", payload()), (T0 + 60, "telemetry", b'{"v":"1.0"}'))
    s = derive(r, T0 + 61, TH)
    assert "last message refused" in s.conditions
    assert r.last_reject and "lacks field 't'" in r.last_reject


def test_topic_is_the_only_source_of_the_device_id() -> None:
    assert parse_topic("edge/kec-3171-01/up/telemetry") == ("kec-3171-01", "telemetry")
    for bad in ("edge/KEC/up/status", "edge/a/up/status", "edge/kec-1/down/status",
                "edge/kec-1/up/custody/x", "edge/kec-1/up/telemetry/x", "x/kec-1/up/status"):
        assert parse_topic(bad) is None, bad
    assert observe("edge/kec-1/up/custody", b"", T0) == Ignored("bad_topic")
    assert observe("edge/kec-1/up/status", b"", T0, retained=True) == Ignored("cleared")
    obs = observe("edge/kec-1/up/telemetry", payload(), T0)
    assert isinstance(obs, TelemetryObs) and obs.device_id == "kec-1"
    assert obs.telemetry == telemetry()


def test_human_age() -> None:
    assert [human_age(x) for x in (None, 5, 95, 3600, 20000, 90000, 86400 * 3)] == [
        "–", "5 s", "1 min", "1 h", "5 h 33 min", "1 d 1 h", "3 d"]
