"""The supervisor watchdog's restart policy, in memory: no supervisord, no clock."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.health.supervisor_listener import (
    HELD,
    HOUR_S,
    STARTING,
    Hold,
    Observation,
    Restart,
    WatchdogPolicy,
)


def policy() -> WatchdogPolicy:
    return WatchdogPolicy(stale_after_s={"intake": 60.0}, max_restarts_per_hour=3,
                          min_backoff_s=30.0, max_backoff_s=300.0)


def ob(uptime: float, age: float | None, running: bool = True) -> Observation:
    return Observation("intake", running, uptime, age, "sealing")


def test_fresh_heartbeat_is_left_alone() -> None:
    assert policy().decide(1000, [ob(500, 5)]) == []


def test_stale_heartbeat_after_grace_is_restarted_with_reason() -> None:
    [d] = policy().decide(1000, [ob(500, 95)])
    assert isinstance(d, Restart) and d.name == "intake"
    assert "last heartbeat 95 s ago (limit 60 s)" in d.reason and "'sealing'" in d.reason


def test_no_heartbeat_during_startup_grace_is_expected() -> None:
    p = policy()
    assert p.decide(1000, [ob(20, None)]) == []
    assert p.state("intake") == STARTING
    [d] = p.decide(1100, [ob(120, None)])
    assert isinstance(d, Restart) and "no heartbeat since it started" in d.reason


def test_a_heartbeat_older_than_the_process_counts_as_none() -> None:
    [d] = policy().decide(1000, [ob(100, 300)])
    assert isinstance(d, Restart) and "no heartbeat since it started" in d.reason


def test_not_running_and_unknown_programs_are_supervisords_business() -> None:
    p = policy()
    assert p.decide(1000, [ob(500, None, running=False)]) == []
    assert p.decide(1000, [Observation("edge-watchdog", True, 500, None)]) == []


def test_backoff_doubles_and_hourly_budget_holds() -> None:
    p = policy()
    t = 10_000.0
    times = []
    for _ in range(200):  # hung for good: stale on every 5 s tick
        for d in p.decide(t, [ob(p.backoff_s(1) + 100, None)]):
            if isinstance(d, Restart):
                p.restarted("intake", t)
                times.append(t)
        t += 5
    assert len(times) == 3  # the hourly budget
    gaps = [b - a for a, b in pairwise(times)]
    assert gaps == [30.0, 60.0]  # min_backoff, then doubled
    assert p.state("intake") == HELD


def test_hold_is_logged_once_then_rarely() -> None:
    p = policy()
    p.restarted("intake", 1000)
    holds = [d for t in range(1001, 1030) for d in p.decide(t, [ob(200, None)])]
    assert len(holds) == 1 and isinstance(holds[0], Hold)
    assert "not restarting yet" in holds[0].reason and holds[0].retry_in_s > 0


def test_recovery_resets_the_backoff_but_not_the_hourly_budget() -> None:
    p = policy()
    p.restarted("intake", 1000)
    p.restarted("intake", 1100)
    assert p.backoff_s(2) == 60
    p.decide(1200, [ob(100, 3)])  # this process heartbeats: recovered
    [d] = p.decide(1300, [ob(200, 100)])
    assert isinstance(d, Restart)  # backoff back to 30 s, already passed
    p.restarted("intake", 1300)
    [h] = p.decide(1500, [ob(200, 100)])
    assert isinstance(h, Hold)  # 3 restarts this hour
    [d] = p.decide(1000 + HOUR_S, [ob(200, 100)])
    assert isinstance(d, Restart)  # the first one left the window


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 400), st.booleans(), st.one_of(
    st.none(), st.floats(0, 500)), st.booleans()), min_size=1, max_size=300),
       st.integers(1, 5))
def test_never_more_than_budget_restarts_in_any_hour(
        steps: list[tuple[float, bool, float | None, bool]], budget: int) -> None:
    p = WatchdogPolicy(stale_after_s={"intake": 60.0}, max_restarts_per_hour=budget,
                       min_backoff_s=10.0, max_backoff_s=100.0)
    t, started, restarts = 0.0, 0.0, []
    for dt, running, age, restart_fails in steps:
        t += dt
        for d in p.decide(t, [Observation("intake", running, t - started, age)]):
            if isinstance(d, Restart) and not restart_fails:
                p.restarted("intake", t)
                restarts.append(t)
                started = t
    for i, a in enumerate(restarts):
        assert sum(1 for b in restarts[i:] if b - a < HOUR_S) <= budget
