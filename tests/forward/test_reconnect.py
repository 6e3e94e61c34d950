"""The reconnect policy: quick while the office link is down, backing off with full jitter
while the central side refuses, reset by a stable connection or an uplink switch."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from edge.forward.reconnect import Failure, Reconnector, ReconnectPolicy

P = ReconnectPolicy(quick_s=1.0, base_s=1.0, max_s=120.0, stable_s=60.0)


@given(st.lists(st.sampled_from(list(Failure)), min_size=1, max_size=60), st.integers())
def test_delays_are_bounded(kinds: list[Failure], seed: int) -> None:
    r = Reconnector(P, random.Random(seed))
    for k in kinds:
        d = r.failed(k, 0.0)
        assert 0.0 <= d <= (1.5 * P.quick_s if k is Failure.NETWORK else P.max_s)


def test_link_returning_is_noticed_within_two_seconds() -> None:
    r = Reconnector(P, random.Random(1))
    for _ in range(1000):  # however long the office was offline
        assert r.failed(Failure.NETWORK, 0.0) <= 1.5


def test_broker_refusals_back_off_and_spread_the_fleet() -> None:
    # 7,000 offices whose broker refused 8 times: their next attempts spread over minutes
    attempts = []
    for seed in range(7000):
        r = Reconnector(P, random.Random(seed))
        for _ in range(8):
            d = r.failed(Failure.BROKER, 0.0)
        attempts.append(d)
    busiest_second = max(sum(1 for a in attempts if s <= a < s + 1) for s in range(120))
    assert busiest_second < 7000 / 30  # no second gets more than ~3 % of the fleet


def test_stable_connection_and_uplink_switch_reset_the_backoff() -> None:
    r = Reconnector(P, random.Random(2))
    for _ in range(10):
        r.failed(Failure.BROKER, 0.0)
    assert r.broker_failures == 10
    r.connected(100.0)
    r.disconnected(Failure.NETWORK, 100.0 + P.stable_s)
    assert r.broker_failures == 0
    for _ in range(10):
        r.failed(Failure.BROKER, 0.0)
    r.link_changed(500.0)
    assert r.broker_failures == 0 and 500.0 <= r.next_attempt <= 500.0 + P.switch_jitter_s


def test_short_connection_keeps_backing_off() -> None:
    r = Reconnector(P, random.Random(3))
    for _ in range(5):
        r.failed(Failure.BROKER, 0.0)
    r.connected(10.0)
    r.disconnected(Failure.BROKER, 11.0)
    assert r.broker_failures == 6


def test_the_connection_dropped_for_a_switch_does_not_delay_the_new_links_attempt() -> None:
    for seed in range(200):
        r = Reconnector(P, random.Random(seed))
        r.failed(Failure.BROKER, 0.0)
        r.link_changed(100.0)
        scheduled = r.next_attempt
        assert 100.0 <= scheduled <= 100.0 + P.switch_jitter_s
        # the old connection ends 0.25 s later (the drop); the switch's attempt stands
        d = r.superseded(100.25)
        assert r.next_attempt == scheduled and d == max(0.0, scheduled - 100.25)
        assert r.connected_since is None and r.broker_failures == 0
    # whereas treating it as a network failure would wait up to 1.5 x quick_s more
    r = Reconnector(P, random.Random(3))
    r.link_changed(100.0)
    assert r.failed(Failure.NETWORK, 100.25) >= 0.5 * P.quick_s
