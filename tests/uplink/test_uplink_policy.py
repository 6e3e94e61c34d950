"""The failover policy, driven in memory: examples first, then Hypothesis properties."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.uplink.policy import (
    DOWN,
    FAILBACK_PENDING,
    NO_LINK,
    SELECTOR_TRANSITIONS,
    STEADY,
    STRANDED,
    UNKNOWN,
    UP,
    AddressChanged,
    CarrierChanged,
    Event,
    Policy,
    ProbeResult,
    Switch,
    Tick,
)
from tests.uplink.policy_helpers import CFG, LINKS, Sim, link

# --- start ----------------------------------------------------------------------------------


def test_starts_on_wired_as_soon_as_it_is_up() -> None:
    sim = Sim.new()
    sim.probe("4g", True, 0.1)
    sim.probe("4g", True, 0.2)
    assert sim.policy.active is None  # 4G is up, but wired is still unknown: wait for it
    sim.probe("wired", True, 0.3)
    sim.probe("wired", True, 0.4)
    assert [(s.to_link, s.reason) for s in sim.switches] == [("wired", "start")]
    assert sim.policy.state == STEADY


def test_starts_on_4g_at_once_when_wired_is_known_down() -> None:
    sim = Sim.new()
    for t in (0.1, 0.2, 0.3):
        sim.probe("wired", False, t)
    sim.probe("4g", True, 0.35)
    assert sim.policy.active is None
    sim.probe("4g", True, 0.4)
    assert sim.policy.active == "4g"
    assert sim.switches[0].at == pytest.approx(0.4)


def test_starts_on_4g_after_the_startup_wait_when_wired_stays_unknown() -> None:
    sim = Sim.new()
    sim.probe("4g", True, 0.1)
    sim.probe("4g", True, 0.2)
    sim.advance(10.0)
    assert sim.switches == [Switch(None, "4g", "start", CFG.startup_wait_s)]


def test_nothing_up_means_no_link() -> None:
    sim = Sim.new()
    sim.advance(100.0)
    assert sim.policy.state == NO_LINK and sim.switches == []


# --- failover -------------------------------------------------------------------------------


def test_carrier_loss_fails_over_exactly_after_the_grace() -> None:
    sim = Sim.new()
    t = sim.both_up()
    sim.carrier("wired", False, t + 1.0)
    assert sim.policy.view("wired").health == UP  # counted at once, but not yet down
    assert sim.policy.next_deadline() == pytest.approx(t + 1.0 + CFG.carrier_grace_s)
    sim.advance(t + 10.0)
    sw = sim.switches[-1]
    assert (sw.from_link, sw.to_link, sw.reason) == ("wired", "4g", "failover")
    assert sw.at == pytest.approx(t + 1.0 + CFG.carrier_grace_s)


def test_address_loss_counts_like_carrier_loss() -> None:
    sim = Sim.new()
    t = sim.both_up()
    sim.address("wired", False, t + 1.0)
    sim.advance(t + 5.0)
    assert sim.switches[-1].at == pytest.approx(t + 1.0 + CFG.carrier_grace_s)


def test_carrier_bounce_shorter_than_the_grace_does_not_switch() -> None:
    sim = Sim.new()
    t = sim.both_up()
    sim.carrier("wired", False, t + 1.0)
    sim.carrier("wired", True, t + 1.0 + CFG.carrier_grace_s - 0.01)
    sim.advance(t + 100.0)
    assert len(sim.switches) == 1


def test_a_probe_through_the_link_after_the_loss_beats_a_late_carrier_report() -> None:
    # The kernel may report carrier-up ~1 s late; packets flowing prove it earlier.
    sim = Sim.new()
    t = sim.both_up()
    sim.carrier("wired", False, t + 1.0)
    sim.probe("wired", True, t + 1.3, started=t + 1.2)
    sim.advance(t + 5.0)
    sim.carrier("wired", True, t + 5.0)
    assert len(sim.switches) == 1
    assert sim.policy.view("wired").health == UP


def test_a_probe_that_left_before_the_loss_proves_nothing() -> None:
    sim = Sim.new()
    t = sim.both_up()
    sim.carrier("wired", False, t + 1.0)
    sim.probe("wired", True, t + 1.1, started=t + 0.9)
    sim.advance(t + 5.0)
    assert sim.switches[-1].reason == "failover"


def test_silent_loss_fails_over_at_the_third_failed_probe() -> None:
    sim = Sim.new()
    t = sim.both_up()
    sim.probe("wired", False, t + 1.0)
    sim.probe("wired", False, t + 2.0)
    assert sim.policy.active == "wired"
    sim.probe("wired", False, t + 3.0)
    assert sim.policy.active == "4g"
    assert sim.switches[-1].at == pytest.approx(t + 3.0)


def test_failure_bursts_below_the_threshold_do_not_switch() -> None:
    sim = Sim.new()
    t = sim.both_up()
    for _ in range(50):
        sim.probe("wired", False, t + 0.1)
        sim.probe("wired", False, t + 0.2)
        sim.probe("wired", True, t + 0.3)
        t += 0.3
    assert len(sim.switches) == 1


def test_dead_4g_is_not_taken_when_wired_fails() -> None:
    # HiLink modem: carrier up, cellular side dead: only the probes can tell.
    sim = Sim.new()
    t = sim.both_up()
    sim.carrier("4g", True, t)
    for i in range(3):
        sim.probe("4g", False, t + 1 + i)
    assert sim.policy.view("4g").health == DOWN
    sim.carrier("wired", False, t + 5)
    sim.advance(t + 20)
    assert sim.policy.active == "wired" and sim.policy.state == STRANDED
    assert len(sim.switches) == 1
    sim.probe("4g", True, t + 21)
    sim.probe("4g", True, t + 22)
    assert sim.policy.active == "4g"
    assert sim.switches[-1].reason == "failover"


# --- failback -------------------------------------------------------------------------------


def fail_wired(sim: Sim, t: float) -> float:
    for i in range(CFG.fail_after):
        sim.probe("wired", False, t + i * 0.1)
    assert sim.policy.active == "4g"
    return t + CFG.fail_after * 0.1


def test_failback_only_after_a_clean_holddown() -> None:
    sim = Sim.new()
    t = fail_wired(sim, sim.both_up())
    t_up = t + 0.2
    sim.probe("wired", True, t + 0.1)
    sim.probe("wired", True, t_up)
    assert sim.policy.view("wired").health == UP
    assert sim.policy.state == FAILBACK_PENDING
    assert sim.policy.next_deadline() == pytest.approx(t_up + CFG.holddown_s)
    sim.advance(t_up + CFG.holddown_s - 0.01)
    assert sim.policy.active == "4g"
    sim.advance(t_up + CFG.holddown_s)
    assert sim.policy.active == "wired"
    assert sim.switches[-1].reason == "failback"


def test_a_single_failed_probe_restarts_the_holddown() -> None:
    sim = Sim.new()
    t = fail_wired(sim, sim.both_up())
    sim.probe("wired", True, t + 1)
    sim.probe("wired", True, t + 2)
    sim.probe("wired", False, t + 50)  # one miss: not down, but not clean either
    assert sim.policy.view("wired").health == UP
    sim.advance(t + 2 + CFG.holddown_s + 1)
    assert sim.policy.active == "4g"
    sim.probe("wired", True, t + 63)
    sim.probe("wired", True, t + 64)
    sim.advance(t + 64 + CFG.holddown_s - 0.1)
    assert sim.policy.active == "4g"
    sim.advance(t + 64 + CFG.holddown_s)
    assert sim.policy.active == "wired"


def test_4g_dying_during_the_holddown_goes_back_to_wired_at_once() -> None:
    sim = Sim.new()
    t = fail_wired(sim, sim.both_up())
    sim.probe("wired", True, t + 1)
    sim.probe("wired", True, t + 2)
    sim.carrier("4g", False, t + 3)
    sim.advance(t + 3 + CFG.carrier_grace_s)
    assert sim.switches[-1] == Switch("4g", "wired", "failover", t + 3 + CFG.carrier_grace_s)


def test_probe_rates_follow_the_situation() -> None:
    sim = Sim.new()
    assert sim.policy.probe_interval("4g") == 1.0  # unknown: learn it quickly
    t = sim.both_up()
    assert sim.policy.probe_interval("wired") == 1.0
    assert sim.policy.probe_interval("4g") == 30.0  # standby and all is well: rare
    sim.probe("wired", False, t + 1)
    assert sim.policy.probe_interval("4g") == 1.0  # wired in doubt: get 4G ready
    sim.probe("wired", True, t + 2)
    assert sim.policy.probe_interval("4g") == 30.0


def test_transition_table_covers_every_state_and_situation() -> None:
    situations = set(SELECTOR_TRANSITIONS[STEADY])
    for state in (STEADY, FAILBACK_PENDING, STRANDED):
        assert set(SELECTOR_TRANSITIONS[state]) == situations


def test_link_states_start_unknown() -> None:
    p = Policy(CFG, LINKS, 0.0)
    assert {p.view(n).health for n in p.link_names} == {UNKNOWN}


# --- properties -----------------------------------------------------------------------------

# One step of noise on a link: (kind, link, dt) with kind in fail/ok/down/up/addr_down/addr_up.
noise_kind = st.sampled_from(["ok", "ok", "ok", "fail", "fail", "down", "up", "addr_down",
                              "addr_up", "tick"])
noise_link = st.sampled_from(["wired", "4g"])
dt = st.floats(min_value=0.0, max_value=25.0, allow_nan=False)
small_cfg = st.builds(
    lambda fall, rise, grace, hold, wait: replace(
        CFG, fail_after=fall, rise_after=rise, carrier_grace_s=grace, holddown_s=hold,
        startup_wait_s=wait),
    st.integers(1, 5), st.integers(1, 4), st.floats(0.0, 5.0), st.floats(0.0, 60.0),
    st.floats(0.0, 10.0),
)


def run_noise(sim: Sim, steps: list[tuple[str, str, float]], start: float) -> None:
    t = start
    for kind, name, step in steps:
        t += step
        if kind == "ok":
            started = t - min(step, 0.5)
            sim.probe(name, True, t, started=started)
        elif kind == "fail":
            sim.probe(name, False, t)
        elif kind in ("down", "up"):
            sim.carrier(name, kind == "up", t)
        elif kind in ("addr_down", "addr_up"):
            sim.address(name, kind == "addr_up", t)
        else:
            sim.advance(t)


def is_loss(ev: Event, name: str) -> bool:
    if isinstance(ev, CarrierChanged):
        return ev.link == name and not ev.carrier
    if isinstance(ev, AddressChanged):
        return ev.link == name and not ev.present
    return False


def is_bad(ev: Event, name: str) -> bool:
    return is_loss(ev, name) or (isinstance(ev, ProbeResult) and ev.link == name and not ev.ok)


def probes_of(events: list[Event], name: str) -> list[ProbeResult]:
    return [ev for ev in events if isinstance(ev, ProbeResult) and ev.link == name]


@settings(max_examples=300, deadline=None)
@given(cfg=small_cfg, steps=st.lists(st.tuples(noise_kind, noise_link, dt), max_size=80))
def test_every_switch_is_justified_by_the_event_history(
        cfg: object, steps: list[tuple[str, str, float]]) -> None:
    assert isinstance(cfg, type(CFG))
    sim = Sim.new(cfg=cfg)
    run_noise(sim, steps, 0.0)
    events = sim.events
    activated: dict[str, int] = {}
    left: dict[str, float] = {}
    for sw, n in zip(sim.switches, sim.switch_after, strict=True):
        before = events[:n]  # everything the policy had seen when it switched
        # The target is confirmed: rise_after good probes since its last bad signal.
        last_bad = max((i for i, e in enumerate(before) if is_bad(e, sw.to_link)), default=-1)
        oks = [p for p in probes_of(before[last_bad + 1:], sw.to_link) if p.ok]
        assert len(oks) >= cfg.rise_after, sw
        if sw.reason == "failback":
            # Clean for the whole hold-down: the rise-th good probe after the last bad
            # signal came no later than holddown_s before the switch ...
            assert oks[cfg.rise_after - 1].at <= sw.at - cfg.holddown_s + 1e-9, sw
            # ... so there is no flapping: the last move away from it is that long ago.
            if sw.to_link in left:
                assert sw.at - left[sw.to_link] >= cfg.holddown_s - 1e-9, sw
        if sw.reason == "failover":
            # The link left had failed since it became active: fail_after misses in a row,
            # or a carrier/address loss at least carrier_grace_s old.
            src = sw.from_link
            assert src is not None
            window = before[activated[src]:]
            run = best = 0
            for p in probes_of(window, src):
                run = 0 if p.ok else run + 1
                best = max(best, run)
            losses = [e for e in window
                      if is_loss(e, src) and e.at <= sw.at - cfg.carrier_grace_s + 1e-9]
            assert best >= cfg.fail_after or losses, sw
        if sw.from_link is not None:
            left[sw.from_link] = sw.at
        activated[sw.to_link] = n


burst = st.one_of(
    # a few failed probes (fewer than fail_after), then one that gets through
    st.tuples(st.just("fails"), st.integers(1, CFG.fail_after - 1),
              st.floats(0.05, 2.0)),
    # carrier gone for less than the grace, restored by netlink or by a probe
    st.tuples(st.sampled_from(["bounce_netlink", "bounce_probe"]), st.just(0),
              st.floats(0.0, CFG.carrier_grace_s - 0.01)),
    # anything at all on the standby 4G link
    st.tuples(st.sampled_from(["4g_fail", "4g_ok", "4g_down", "4g_up"]), st.just(0),
              st.floats(0.0, 10.0)),
    st.tuples(st.just("quiet"), st.just(0), st.floats(0.0, 30.0)),
)


def run_bursts(sim: Sim, bursts: list[tuple[str, int, float]], t: float) -> float:
    for kind, n, span in bursts:
        if kind == "fails":
            for _ in range(n):
                t += span
                sim.probe("wired", False, t)
            t += span
            sim.probe("wired", True, t, started=t - 0.01)
        elif kind.startswith("bounce"):
            t += 0.1
            sim.carrier("wired", False, t)
            if kind == "bounce_netlink":
                sim.carrier("wired", True, t + span)
            else:
                sim.probe("wired", True, t + span, started=t + span / 2)
            t += span
            sim.probe("wired", True, t + 0.01, started=t)  # restore any lost good streak
            t += 0.01
        elif kind.startswith("4g"):
            t += span
            what = kind[3:]
            if what in ("ok", "fail"):
                sim.probe("4g", what == "ok", t)
            else:
                sim.carrier("4g", what == "up", t)
        else:
            t += span
            sim.advance(t)
    return t


@settings(max_examples=300, deadline=None)
@given(bursts=st.lists(burst, max_size=40))
def test_bursts_below_the_thresholds_never_switch(bursts: list[tuple[str, int, float]]) -> None:
    sim = Sim.new()
    t = run_bursts(sim, bursts, sim.both_up())
    sim.advance(t + 100.0)
    assert [s.reason for s in sim.switches] == ["start"]
    assert sim.policy.active == "wired"


@settings(max_examples=300, deadline=None)
@given(bursts=st.lists(burst, max_size=20), silent=st.booleans(),
       gaps=st.lists(st.floats(0.05, 2.0), min_size=CFG.fail_after, max_size=CFG.fail_after))
def test_a_real_outage_fails_over_within_the_bound(
        bursts: list[tuple[str, int, float]], silent: bool, gaps: list[float]) -> None:
    sim = Sim.new()
    t = run_bursts(sim, bursts, sim.both_up())
    for _ in range(CFG.rise_after):  # 4G known good before the outage
        t += 0.1
        sim.probe("4g", True, t)
    t0 = t + 1.0
    if silent:
        t = t0
        for gap in gaps:
            t += gap
            sim.probe("wired", False, t)
            sim.probe("4g", True, t + 0.001)
        # switched at the fail_after-th miss, i.e. within fail_after probe periods
        expected = t0 + sum(gaps)
    else:
        sim.carrier("wired", False, t0)
        expected = t0 + CFG.carrier_grace_s
        sim.advance(t0 + 30)
    failovers = [s for s in sim.switches if s.reason == "failover"]
    assert len(failovers) == 1
    assert failovers[0].to_link == "4g"
    assert failovers[0].at == pytest.approx(expected)


def test_tick_without_any_event_is_harmless() -> None:
    p = Policy(CFG, (link("wired", 0),), 0.0)
    assert p.handle(Tick(1.0)) is None
