"""Deriving one state per light from a snapshot: examples, then properties over all inputs."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.health.heartbeat import HeartbeatInfo
from edge.panel.patterns import DataState, Led, NetState, SysState, shown
from edge.panel.state import (
    DATA_RULES,
    NET_RULES,
    SYS_RULES,
    Health,
    PanelInputs,
    PanelThresholds,
    derive,
    derive_with_reasons,
)
from tests.panel.panel_snapshots import ALL_FRESH, ERROR, FRESH, OTHER_BOOT, STALE, hb, inputs

TH = PanelThresholds()


# --- examples: the situations on the legend --------------------------------------------------

@pytest.mark.parametrize("case,over,expected", [
    ("online on wired", {}, (NetState.WIRED, DataState.SAFE, SysState.OK)),
    ("online on 4G", {"uplink_active": "4g"}, (NetState.CELLULAR, DataState.SAFE, SysState.OK)),
    ("offline, storing safely", {"uplink_active": None, "backlog_count": 40},
     (NetState.OFFLINE, DataState.SAFE, SysState.OK)),
    ("backlog large", {"backlog_count": 200}, (NetState.WIRED, DataState.BACKLOG, SysState.OK)),
    ("backlog old", {"backlog_oldest_age_s": 6 * 3600.0},
     (NetState.WIRED, DataState.BACKLOG, SysState.OK)),
    ("nearly full", {"spool_free_fraction": 0.05, "backlog_count": 900},
     (NetState.WIRED, DataState.NEARLY_FULL, SysState.OK)),
    ("refusing", {"spool_refusing": True, "spool_free_fraction": 0.0},
     (NetState.WIRED, DataState.REFUSING, SysState.OK)),
    ("forwarder stuck", {"heartbeats": hb(forward=STALE)},
     (NetState.WIRED, DataState.SAFE, SysState.FAULT)),
    ("forwarder never started", {"heartbeats": hb(forward=None)},
     (NetState.WIRED, DataState.SAFE, SysState.FAULT)),
    ("intake down: nothing accepts recordings", {"heartbeats": hb(intake=STALE)},
     (NetState.WIRED, DataState.REFUSING, SysState.FAULT)),
    ("intake reports an error", {"heartbeats": hb(intake=ERROR)},
     (NetState.WIRED, DataState.REFUSING, SysState.FAULT)),
    ("uplink down: link state unknown", {"heartbeats": hb(uplink=STALE)},
     (NetState.UNKNOWN, DataState.SAFE, SysState.FAULT)),
    ("spool unreadable", {"spool_known": False},
     (NetState.WIRED, DataState.UNKNOWN, SysState.FAULT)),
    ("not provisioned", {"provisioned": False, "heartbeats": {"uplink": FRESH},
                         "spool_known": False},
     (NetState.WIRED, DataState.UNKNOWN, SysState.NOT_PROVISIONED)),
    ("starting", {"uptime_s": 20.0, "heartbeats": hb(forward=None, uplink=OTHER_BOOT),
                  "uplink_known": False},
     (NetState.UNKNOWN, DataState.SAFE, SysState.STARTING)),
    ("starting, intake not up yet", {"uptime_s": 20.0, "heartbeats": {}, "spool_known": False,
                                     "uplink_known": False},
     (NetState.UNKNOWN, DataState.UNKNOWN, SysState.STARTING)),
    ("locate", {"locate_until": 3660.0, "spool_refusing": True},
     (NetState.LOCATE, DataState.LOCATE, SysState.LOCATE)),
    ("locate expired", {"locate_until": 3600.0},
     (NetState.WIRED, DataState.SAFE, SysState.OK)),
])
def test_situations(case: str, over: dict[str, Any],
                    expected: tuple[NetState, DataState, SysState]) -> None:
    view = derive(inputs(**over))
    assert (view.net, view.data, view.sys) == expected, case


def test_reasons_name_the_rule_and_programs_their_health() -> None:
    d = derive_with_reasons(inputs(heartbeats=hb(forward=STALE), uplink_active="4g"))
    assert d.reasons == {Led.NET: "online on 4G", Led.DATA: "stored safely",
                         Led.SYS: "program down or stuck"}
    assert d.programs == {"intake": Health.RUNNING, "forward": Health.DOWN,
                          "uplink": Health.RUNNING}


def test_a_program_still_starting_after_the_grace_counts_as_running() -> None:
    starting = HeartbeatInfo(age_s=1.0, status="starting", detail={}, stale=False)
    assert derive(inputs(uptime_s=10.0, heartbeats=hb(forward=starting))).sys \
        is SysState.STARTING
    assert derive(inputs(heartbeats=hb(forward=starting))).sys is SysState.OK


def test_a_program_that_crashed_during_start_up_is_a_fault_at_once() -> None:
    assert derive(inputs(uptime_s=30.0, heartbeats=hb(forward=STALE))).sys is SysState.FAULT


def test_missing_uplink_status_after_the_grace_is_a_fault_only_if_uplink_is_expected() -> None:
    assert derive(inputs(uplink_known=False)).sys is SysState.FAULT
    no_uplink = dataclasses.replace(TH, programs=("intake", "forward"))
    view = derive(inputs(uplink_known=False, heartbeats=hb(uplink=None)), no_uplink)
    assert (view.net, view.sys) == (NetState.UNKNOWN, SysState.OK)


def test_thresholds_come_from_config() -> None:
    strict = dataclasses.replace(TH, backlog_warn_count=2, spool_low_fraction=0.9)
    assert derive(inputs(backlog_count=2, spool_free_fraction=0.95), strict).data \
        is DataState.BACKLOG
    assert derive(inputs(), strict).data is DataState.NEARLY_FULL


def test_every_rule_table_ends_in_a_catch_all() -> None:
    for rules in (NET_RULES, DATA_RULES, SYS_RULES):
        assert rules[-1].when(object()) is True  # type: ignore[arg-type]


# --- properties over all inputs --------------------------------------------------------------

PROGRAMS = ["intake", "forward", "uplink", "panel", "extra"]
weird_floats = st.floats(allow_nan=True, allow_infinity=True)
ages = st.one_of(st.floats(min_value=0, max_value=1e6), st.just(math.inf), weird_floats)

heartbeat_infos = st.builds(
    HeartbeatInfo,
    age_s=ages,
    status=st.one_of(st.sampled_from(["ok", "starting", "error", "stopped", "unreadable"]),
                     st.text(alphabet="abcdefgh-", max_size=8)),
    detail=st.just({}),
    stale=st.booleans(),
)

panel_inputs = st.builds(
    PanelInputs,
    provisioned=st.booleans(),
    uptime_s=st.one_of(st.floats(min_value=0, max_value=1e7), weird_floats),
    uplink_active=st.sampled_from(["wired", "4g", None, "lte"]),
    uplink_known=st.booleans(),
    backlog_count=st.integers(min_value=-1, max_value=10**9),
    backlog_oldest_age_s=st.one_of(st.none(), ages),
    spool_free_fraction=st.one_of(st.floats(min_value=0, max_value=1), weird_floats),
    spool_refusing=st.booleans(),
    heartbeats=st.dictionaries(st.sampled_from(PROGRAMS), heartbeat_infos),
    locate_until=st.one_of(st.none(), st.floats(min_value=0, max_value=1e7), weird_floats),
    spool_known=st.booleans(),
)

# Mostly-healthy offices with one to three things wrong: where the interesting edges are.
_faults: dict[str, st.SearchStrategy[Any]] = {
    "provisioned": st.booleans(),
    "uptime_s": st.floats(min_value=0, max_value=400),
    "uplink_active": st.sampled_from(["wired", "4g", None]),
    "uplink_known": st.booleans(),
    "backlog_count": st.integers(min_value=0, max_value=1000),
    "backlog_oldest_age_s": st.one_of(st.none(), st.floats(min_value=0, max_value=1e5)),
    "spool_free_fraction": st.floats(min_value=0, max_value=1),
    "spool_refusing": st.booleans(),
    "spool_known": st.booleans(),
    "locate_until": st.one_of(st.none(), st.floats(min_value=0, max_value=1e4)),
    "heartbeats": st.dictionaries(st.sampled_from(PROGRAMS), heartbeat_infos).map(
        lambda d: {**ALL_FRESH, **d}),
}
near_healthy = st.lists(st.sampled_from(sorted(_faults)), min_size=1, max_size=3,
                        unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: _faults[k] for k in keys}).map(
        lambda over: inputs(**over)))
panel_inputs = st.one_of(panel_inputs, near_healthy)

thresholds = st.builds(
    PanelThresholds,
    starting_grace_s=st.floats(min_value=0, max_value=1e4),
    backlog_warn_count=st.integers(min_value=1, max_value=10**6),
    backlog_warn_age_s=st.floats(min_value=1, max_value=1e6),
    spool_low_fraction=st.floats(min_value=0, max_value=1),
    programs=st.lists(st.sampled_from(PROGRAMS[:3]), unique=True).map(tuple),
)


@settings(max_examples=400)
@given(panel_inputs, thresholds)
def test_every_input_maps_to_a_state_with_a_pattern(i: PanelInputs, th: PanelThresholds) -> None:
    d = derive_with_reasons(i, th)
    assert isinstance(d.view.net, NetState)
    assert isinstance(d.view.data, DataState)
    assert isinstance(d.view.sys, SysState)
    for led, state in d.view.states().items():
        assert shown(state).pattern.steps
        assert d.reasons[led]


@given(panel_inputs, thresholds)
def test_the_mapping_is_deterministic(i: PanelInputs, th: PanelThresholds) -> None:
    first = derive_with_reasons(i, th)
    reordered = dataclasses.replace(i, heartbeats=dict(reversed(list(i.heartbeats.items()))))
    assert derive_with_reasons(reordered, th) == first
    assert derive_with_reasons(i, th) == first


@given(panel_inputs, thresholds)
def test_locate_overrides_every_light_while_it_lasts(i: PanelInputs,
                                                     th: PanelThresholds) -> None:
    view = derive(i, th)
    locating = i.locate_until is not None and i.uptime_s < i.locate_until
    assert (view.net is NetState.LOCATE) == locating
    assert (view.data is DataState.LOCATE) == locating
    assert (view.sys is SysState.LOCATE) == locating


@given(panel_inputs, thresholds)
def test_data_never_says_keep_recording_when_it_is_not_safe(i: PanelInputs,
                                                            th: PanelThresholds) -> None:
    d = derive_with_reasons(i, th)
    if d.view.data in (DataState.SAFE, DataState.BACKLOG, DataState.NEARLY_FULL):
        assert i.provisioned
        assert i.spool_known and math.isfinite(i.spool_free_fraction)
        assert not i.spool_refusing
        if th.intake_program in th.programs:
            assert d.programs[th.intake_program] is Health.RUNNING


@given(panel_inputs, thresholds)
def test_sys_says_running_only_when_everything_expected_runs(i: PanelInputs,
                                                             th: PanelThresholds) -> None:
    d = derive_with_reasons(i, th)
    if d.view.sys is SysState.OK:
        assert i.provisioned and i.spool_known
        assert all(h is Health.RUNNING for h in d.programs.values())
        if th.uplink_program in th.programs:
            assert i.uplink_known


@given(panel_inputs, thresholds)
def test_not_provisioned_is_shown_unless_locating(i: PanelInputs, th: PanelThresholds) -> None:
    view = derive(i, th)
    if not i.provisioned and view.sys is not SysState.LOCATE:
        assert view.sys is SysState.NOT_PROVISIONED
        assert view.data is DataState.UNKNOWN


SEVERITY = [DataState.SAFE, DataState.BACKLOG, DataState.NEARLY_FULL, DataState.REFUSING]


@given(panel_inputs, thresholds, st.integers(min_value=0, max_value=10**6),
       st.floats(min_value=0, max_value=1))
def test_more_backlog_or_less_room_never_looks_better(i: PanelInputs, th: PanelThresholds,
                                                      more: int, less: float) -> None:
    before = derive(i, th).data
    worse = dataclasses.replace(i, backlog_count=i.backlog_count + more,
                                spool_free_fraction=i.spool_free_fraction - less)
    after = derive(worse, th).data
    if before in SEVERITY and after in SEVERITY:
        assert SEVERITY.index(after) >= SEVERITY.index(before)
