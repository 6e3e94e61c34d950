"""The pattern table: every state has a pattern, and no two states on a light look alike."""

from __future__ import annotations

import math

import pytest

from edge.panel.patterns import (
    ALL_PATTERNS,
    DATA_TABLE,
    LOCATE_PATTERNS,
    NET_TABLE,
    SYS_TABLE,
    DataState,
    Led,
    NetState,
    PanelView,
    Pattern,
    SysState,
    shown,
)

TABLES = {Led.NET: (NetState, NET_TABLE), Led.DATA: (DataState, DATA_TABLE),
          Led.SYS: (SysState, SYS_TABLE)}


@pytest.mark.parametrize("led", list(Led))
def test_every_state_of_a_light_has_a_pattern(led: Led) -> None:
    states, table = TABLES[led]
    assert set(table) == set(states)


@pytest.mark.parametrize("led", list(Led))
def test_no_two_states_of_a_light_share_a_timing(led: Led) -> None:
    """Told apart without colour: each state's timing sequence is unique on its light."""
    _, table = TABLES[led]
    timings = [s.pattern.steps for s in table.values()]
    assert len(set(timings)) == len(timings)
    strips = [s.pattern.strip() for s in table.values()]
    assert len(set(strips)) == len(strips), "the terminal strips must differ too"


def test_the_whole_vocabulary_looks_different_in_the_terminal() -> None:
    strips = {p.strip() for p in ALL_PATTERNS}
    assert len(strips) == len(ALL_PATTERNS)
    assert next(p.strip() for p in ALL_PATTERNS if p.key == "slow-blink") == SLOW_STRIP


SLOW_STRIP = "▮" * 10 + "▯" * 10


def test_sys_is_never_steady_so_a_frozen_panel_shows() -> None:
    for state, s in SYS_TABLE.items():
        assert s.pattern.steady is None, state


def _flashes_per_second(p: Pattern) -> float:
    return sum(1 for level, _ in p.steps if level) / p.period_s


@pytest.mark.parametrize("pattern", [*ALL_PATTERNS, *LOCATE_PATTERNS.values()],
                         ids=lambda p: p.key)
def test_flash_rate_stays_below_three_per_second(pattern: Pattern) -> None:
    assert _flashes_per_second(pattern) <= 3.0


@pytest.mark.parametrize("pattern", [*ALL_PATTERNS, *LOCATE_PATTERNS.values()],
                         ids=lambda p: p.key)
def test_steps_are_whole_tenths_of_a_second(pattern: Pattern) -> None:
    for _, seconds in pattern.steps:
        assert math.isclose(seconds * 10, round(seconds * 10), abs_tol=1e-9)


def test_locate_runs_the_lights_in_turn_one_at_a_time() -> None:
    net, data, sys_ = (LOCATE_PATTERNS[led] for led in Led)
    assert net.period_s == data.period_s == sys_.period_s
    lit_order = []
    for i in range(90):
        t = i * 0.01 + 0.005
        lit = [led for led, p in LOCATE_PATTERNS.items() if p.level_at(t)]
        assert len(lit) == 1, f"at {t:.3f} s: {lit}"
        if not lit_order or lit_order[-1] != lit[0]:
            lit_order.append(lit[0])
    assert lit_order == [Led.NET, Led.DATA, Led.SYS]
    assert all(p.phase_locked for p in LOCATE_PATTERNS.values())


def test_locate_is_unlike_any_other_state() -> None:
    locate = PanelView(NetState.LOCATE, DataState.LOCATE, SysState.LOCATE).patterns()
    others = {s.pattern for t in (NET_TABLE, DATA_TABLE, SYS_TABLE) for k, s in t.items()
              if k.value != "locate"}
    assert not set(locate.values()) & others


def test_level_at_follows_the_steps() -> None:
    p = next(p for p in ALL_PATTERNS if p.key == "double-flash")
    samples = [p.level_at(t) for t in (0.1, 0.3, 0.5, 0.7, 1.9, 2.1)]
    assert samples == [True, False, True, False, False, True]


@pytest.mark.parametrize("steps", [(), ((True, 0.0),), ((True, 1.0), (True, 1.0)),
                                   ((True, math.nan),)])
def test_malformed_patterns_are_refused(steps: tuple[tuple[bool, float], ...]) -> None:
    with pytest.raises(ValueError):
        Pattern("bad", steps, "", "", "", "")


def test_meanings_exist_in_both_languages() -> None:
    for t in (NET_TABLE, DATA_TABLE, SYS_TABLE):
        for state, s in t.items():
            assert s.meaning("en") and s.meaning("id") and s.meaning("en") != s.meaning("id")
            assert shown(state) is s
