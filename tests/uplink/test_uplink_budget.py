"""The 4G budget: billing periods, counter resets, reboots and sparse durable writes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.uplink.budget import (
    POLICY_ALL,
    POLICY_PRIORITY_ONLY,
    POLICY_TELEMETRY_ONLY,
    BudgetMeter,
    BudgetRecord,
    BudgetStore,
    Counters,
    current_boot_id,
    period_bounds,
    read_counters,
)
from edge.uplink.config import BudgetConfig

MB = 1000**2
CFG = BudgetConfig(period_start_day=5, soft_cap_bytes=80 * MB, hard_cap_bytes=100 * MB,
                   small_recording_bytes=2 * MB, persist_every_bytes=4 * MB)
DAY = date(2025, 3, 10)
FRESH = Counters(5, 0, 0)


@pytest.mark.parametrize("today,start_day,expected", [
    (date(2025, 3, 10), 5, (date(2025, 3, 5), date(2025, 4, 5))),
    (date(2025, 3, 4), 5, (date(2025, 2, 5), date(2025, 3, 5))),
    (date(2025, 1, 2), 5, (date(2024, 12, 5), date(2025, 1, 5))),
    (date(2025, 2, 28), 31, (date(2025, 2, 28), date(2025, 3, 31))),
    (date(2025, 3, 30), 31, (date(2025, 2, 28), date(2025, 3, 31))),
    (date(2024, 2, 29), 30, (date(2024, 2, 29), date(2024, 3, 30))),
])
def test_billing_periods(today: date, start_day: int, expected: tuple[date, date]) -> None:
    assert period_bounds(today, start_day) == expected


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), st.integers(1, 31))
def test_every_day_is_in_exactly_its_period(today: date, start_day: int) -> None:
    start, end = period_bounds(today, start_day)
    assert start <= today < end
    assert 28 <= (end - start).days <= 31
    assert period_bounds(end, start_day)[0] == end  # periods tile the calendar


def meter(saved: BudgetRecord | None = None, boot: str = "b1", today: date = DAY,
          wwan: Counters | None = FRESH) -> BudgetMeter:
    return BudgetMeter(CFG, ["wwan0"], saved, boot, today, {"wwan0": wwan})


def test_usage_sets_the_metered_policy() -> None:
    m = meter()
    assert m.policy == POLICY_ALL
    m.observe({"wwan0": Counters(5, 40 * MB, 40 * MB)}, DAY)
    assert m.used == 80 * MB and m.policy == POLICY_PRIORITY_ONLY
    m.observe({"wwan0": Counters(5, 40 * MB, 60 * MB)}, DAY)
    assert m.policy == POLICY_TELEMETRY_ONLY


def test_counter_reset_and_new_ifindex_count_from_zero() -> None:
    m = meter(wwan=Counters(5, 10 * MB, 0))
    m.observe({"wwan0": Counters(5, 12 * MB, 0)}, DAY)           # +2
    m.observe({"wwan0": None}, DAY)                               # modem unplugged
    m.observe({"wwan0": Counters(9, 1 * MB, 0)}, DAY)             # re-enumerated: +1
    m.observe({"wwan0": Counters(9, 3 * MB, 0)}, DAY)             # +2
    m.observe({"wwan0": Counters(9, 1 * MB, 1 * MB)}, DAY)        # ppp0 re-created: +2
    assert m.used == 7 * MB


def test_writes_are_sparse_and_the_committed_total_runs_ahead() -> None:
    m = meter()
    writes = 0
    record = None
    for i in range(1, 1001):  # 100 MB in 100 kB samples
        if m.observe({"wwan0": Counters(5, i * 100_000, 0)}, DAY):
            record = m.record()
            writes += 1
        assert record is not None and record.committed >= m.used  # never behind
    assert m.used == 100 * MB
    assert writes <= 100 * MB // CFG.persist_every_bytes + 1


def test_restart_in_the_same_boot_is_exact() -> None:
    m = meter()
    m.observe({"wwan0": Counters(5, 3 * MB, 0)}, DAY)
    saved = m.record()
    # daemon killed; the modem kept moving data meanwhile
    m2 = meter(saved, wwan=Counters(5, 10 * MB, 1 * MB))
    assert m2.used == 11 * MB


def test_after_a_power_cut_the_committed_total_is_assumed() -> None:
    m = meter()
    m.observe({"wwan0": Counters(5, 3 * MB, 0)}, DAY)
    saved = m.record()
    m.observe({"wwan0": Counters(5, 6 * MB, 0)}, DAY)  # not yet written: lost with power
    m2 = meter(saved, boot="b2", wwan=Counters(2, 1 * MB, 0))
    # never less than the true 6 MB + 1 MB since boot; at most persist_every more
    assert 7 * MB <= m2.used <= 7 * MB + CFG.persist_every_bytes


def test_clean_stop_writes_the_exact_total() -> None:
    m = meter()
    m.observe({"wwan0": Counters(5, 3 * MB, 0)}, DAY)
    saved = m.record(exact=True)
    assert saved.committed == saved.used == 3 * MB
    assert meter(saved, boot="b2", wwan=Counters(2, 0, 0)).used == 3 * MB


def test_new_period_starts_from_zero_and_asks_for_a_write() -> None:
    m = meter()
    m.observe({"wwan0": Counters(5, 90 * MB, 0)}, DAY)
    m.record()
    assert m.policy == POLICY_PRIORITY_ONLY
    assert m.observe({"wwan0": Counters(5, 91 * MB, 0)}, date(2025, 4, 5))
    assert m.used == 1 * MB and m.policy == POLICY_ALL
    assert m.period_start == date(2025, 4, 5)


def test_period_that_ended_while_off_is_not_carried_over() -> None:
    m = meter()
    m.observe({"wwan0": Counters(5, 90 * MB, 0)}, DAY)
    saved = m.record()
    assert meter(saved, boot="b2", today=date(2025, 4, 6), wwan=Counters(2, 0, 0)).used == 0


def test_clock_going_back_keeps_the_period() -> None:
    # No RTC on a Pi: after a power cut the clock may start in the past until NTP syncs.
    m = meter()
    m.observe({"wwan0": Counters(5, 50 * MB, 0)}, DAY)
    saved = m.record()
    m2 = meter(saved, boot="b2", today=date(2025, 1, 1), wwan=Counters(2, 0, 0))
    assert m2.period_start == date(2025, 3, 5) and m2.used >= 50 * MB


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["bytes", "reset", "crash", "stop", "gone"]),
                          st.integers(0, 20 * MB)), max_size=60))
def test_never_undercounts_and_overcounts_at_most_the_reserve_per_crash(
        steps: list[tuple[str, int]]) -> None:
    """A model of the counters and the store; after every crash/stop/restart the meter's total
    stays within [true, true + reserve * crashes]."""
    true_used = 0
    boot = 0
    ifindex = 1
    counter = 0
    stored: BudgetRecord | None = None
    crashes = 0
    m = BudgetMeter(CFG, ["wwan0"], None, "b0", DAY, {"wwan0": Counters(ifindex, 0, 0)})
    stored = m.record()
    for kind, n in steps:
        if kind == "bytes":
            counter += n
            true_used += n
            if m.observe({"wwan0": Counters(ifindex, counter, 0)}, DAY):
                stored = m.record()
        elif kind == "reset":  # modem re-enumerates: new counter from 0
            ifindex += 1
            counter = 0
        elif kind == "gone":
            m.observe({"wwan0": None}, DAY)
        else:
            # the sample loop runs before the stop/crash only if the daemon saw it
            if m.observe({"wwan0": Counters(ifindex, counter, 0)}, DAY):
                stored = m.record()
            if kind == "stop":
                stored = m.record(exact=True)
            else:
                crashes += 1
                boot += 1
                ifindex += 1
                counter = 0  # counters restart at boot
            m = BudgetMeter(CFG, ["wwan0"], stored, f"b{boot}", DAY,
                            {"wwan0": Counters(ifindex, counter, 0)})
            stored = m.record()
        if m.observe({"wwan0": Counters(ifindex, counter, 0)}, DAY):
            stored = m.record()
        assert true_used <= m.used <= true_used + crashes * CFG.persist_every_bytes


def test_store_round_trip_and_damaged_file(tmp_path: Path) -> None:
    store = BudgetStore(tmp_path / "b.json")
    assert store.load() is None
    rec = BudgetRecord(date(2025, 3, 5), 5, 9, "boot", {"wwan0": Counters(3, 1, 4)})
    store.save(rec)
    assert store.load() == rec
    assert json.loads((tmp_path / "b.json").read_text())["used_bytes"] == 5
    (tmp_path / "b.json").write_text("{not json")
    assert store.load() is None
    assert (tmp_path / "b.json.corrupt").exists()


def test_read_counters_from_the_kernel(tmp_path: Path) -> None:
    lo = read_counters("lo")
    assert lo is not None and lo.ifindex >= 1 and lo.rx >= 0
    assert read_counters("no-such-if0") is None
    assert len(current_boot_id()) == 36
