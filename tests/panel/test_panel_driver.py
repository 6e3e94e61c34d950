"""The LEDs show the patterns: checked on gpiozero MockFactory pins, with timing tolerance."""

from __future__ import annotations

import io
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from edge.panel.driver import (
    GpioPanel,
    TerminalPanel,
    choose_pin_factory,
    render_line,
    run_walk,
    walk_plan,
)
from edge.panel.errors import NoGpioBackend
from edge.panel.patterns import (
    ALL_PATTERNS,
    LOCATE_PATTERNS,
    OFF,
    ON,
    SLOW_BLINK,
    DataState,
    Led,
    LedState,
    NetState,
    PanelView,
    SysState,
    shown,
)
from edge.panel.runner import view_notes
from tests.panel.panel_pins import assert_shows, expected_states

WINDOW_S = 2.3  # one whole 2 s cycle and the start of the next

# Every state of every light appears in at least one of these views; all run at once on
# separate pins so the whole check costs one window.
VIEWS = [
    PanelView(NetState.WIRED, DataState.SAFE, SysState.OK),
    PanelView(NetState.CELLULAR, DataState.BACKLOG, SysState.STARTING),
    PanelView(NetState.OFFLINE, DataState.NEARLY_FULL, SysState.FAULT),
    PanelView(NetState.UNKNOWN, DataState.REFUSING, SysState.NOT_PROVISIONED),
    PanelView(NetState.UNKNOWN, DataState.UNKNOWN, SysState.OK),
    PanelView(NetState.LOCATE, DataState.LOCATE, SysState.LOCATE),
]


def _pins(i: int) -> dict[Led, int]:
    return {Led.NET: 2 + 3 * i, Led.DATA: 3 + 3 * i, Led.SYS: 4 + 3 * i}


@pytest.fixture(scope="module")
def shown_on_pins() -> Iterator[tuple[Any, dict[tuple[int, Led], list[Any]]]]:
    factory = MockFactory()
    panels = [GpioPanel(_pins(i), pin_factory=factory) for i in range(len(VIEWS))]
    try:
        for i, (panel, view) in enumerate(zip(panels, VIEWS, strict=True)):
            for led in Led:
                factory.pin(_pins(i)[led]).clear_states()
            panel.show(view.patterns())
        time.sleep(WINDOW_S / 2)
        for panel, view in zip(panels, VIEWS, strict=True):
            panel.show(view.patterns())       # the same again: must not restart anything
        time.sleep(WINDOW_S / 2)
        record = {(i, led): list(factory.pin(_pins(i)[led]).states)
                  for i in range(len(VIEWS)) for led in Led}
        yield factory, record
    finally:
        for panel in panels:
            panel.close()
        factory.close()


ALL_STATES: list[tuple[Led, LedState]] = [
    *((Led.NET, s) for s in NetState), *((Led.DATA, s) for s in DataState),
    *((Led.SYS, s) for s in SysState),
]


@pytest.mark.parametrize("led,state", ALL_STATES, ids=lambda x: getattr(x, "value", x))
def test_each_state_shows_its_pattern_on_the_pin(
    shown_on_pins: tuple[Any, dict[tuple[int, Led], list[Any]]], led: Led, state: LedState,
) -> None:
    factory, record = shown_on_pins
    i = next(i for i, v in enumerate(VIEWS) if v.states()[led] is state)
    pin = factory.pin(_pins(i)[led])
    assert_shows(pin, shown(state).pattern, WINDOW_S, record[(i, led)])


def test_locate_lights_run_in_order(
    shown_on_pins: tuple[Any, dict[tuple[int, Led], list[Any]]],
) -> None:
    _, record = shown_on_pins
    i = VIEWS.index(PanelView(NetState.LOCATE, DataState.LOCATE, SysState.LOCATE))
    first_lit = {}
    for led in Led:
        t = 0.0
        for s in record[(i, led)][1:]:
            t += s.timestamp
            if s.state:
                first_lit[led] = t
                break
    assert first_lit[Led.NET] == pytest.approx(0.0, abs=0.05)
    assert first_lit[Led.DATA] == pytest.approx(0.3, abs=0.05)
    assert first_lit[Led.SYS] == pytest.approx(0.6, abs=0.05)


def test_active_low_wiring_inverts_the_pin() -> None:
    factory = MockFactory()
    panel = GpioPanel({Led.NET: 5, Led.DATA: 6, Led.SYS: 13}, active_high=False,
                      pin_factory=factory)
    try:
        assert factory.pin(5).state is True          # dark = high on an active-low LED
        panel.show({Led.NET: ON, Led.DATA: OFF, Led.SYS: OFF})
        assert factory.pin(5).state is False
        assert factory.pin(6).state is True
    finally:
        panel.close()
        factory.close()


def test_the_expected_record_helper_itself() -> None:
    assert expected_states(SLOW_BLINK, 2.3) == [(0.0, False), (0.0, True), (1.0, False),
                                                (1.0, True)]
    assert expected_states(LOCATE_PATTERNS[Led.DATA], 1.3) == [(0.0, False), (0.3, True),
                                                               (0.3, False), (0.6, True)]
    assert expected_states(ON, 2.0, initial=True) == [(0.0, True)]


# --- the technician's walk -------------------------------------------------------------------

def test_walk_plan_covers_every_light_and_pattern_one_light_at_a_time() -> None:
    pins = {Led.NET: 17, Led.DATA: 27, Led.SYS: 22}
    plan = walk_plan(pins)
    assert len(plan) == 3 * len(ALL_PATTERNS) + 1
    seen = set()
    for step in plan[:-1]:
        moving = [led for led, p in step.patterns.items() if p is not OFF]
        assert len(moving) <= 1
        lit = next(iter(moving), None)
        if lit is not None:
            seen.add((lit, step.patterns[lit]))
            assert f"GPIO{pins[lit]}" in step.say_en and f"GPIO{pins[lit]}" in step.say_id
    assert len(seen) == 3 * (len(ALL_PATTERNS) - 1)     # OFF lights nothing
    assert plan[-1].patterns == dict(LOCATE_PATTERNS)
    assert all(step.hold_s >= 3.0 for step in plan)


@pytest.mark.slow
def test_walk_shows_every_pattern_on_the_named_pin_and_nothing_elsewhere() -> None:
    factory = MockFactory()
    pins = {Led.NET: 17, Led.DATA: 27, Led.SYS: 22}
    panel = GpioPanel(pins, pin_factory=factory)
    # 1.25 cycles: each step ends mid-step, never on a change, so the records are exact.
    plan = walk_plan(pins, cycles=1.25, min_hold_s=0.5)
    said: list[str] = []
    records: list[dict[Led, list[Any]]] = []

    def say(text: str) -> None:
        said.append(text)
        for pin in pins.values():
            factory.pin(pin).clear_states()

    def sleep(seconds: float) -> None:
        time.sleep(seconds)
        records.append({led: list(factory.pin(pin).states) for led, pin in pins.items()})

    try:
        run_walk(panel, plan, say=say, sleep=sleep)
    finally:
        panel.close()
        factory.close()
    assert said == [s.say_en for s in plan]
    for step, record in zip(plan, records, strict=True):
        for led in Led:
            pattern = step.patterns[led]
            assert_shows(factory.pin(pins[led]), pattern, step.hold_s, record[led])


# --- choosing a pin factory ------------------------------------------------------------------

def test_the_environment_chooses_the_factory() -> None:
    factory = choose_pin_factory({"GPIOZERO_PIN_FACTORY": "mock"})
    try:
        assert isinstance(factory, MockFactory)
    finally:
        factory.close()


def test_an_unknown_factory_name_is_named_in_the_error() -> None:
    with pytest.raises(NoGpioBackend, match="nosuch: no such gpiozero pin factory") as e:
        choose_pin_factory({"GPIOZERO_PIN_FACTORY": "nosuch"})
    assert e.value.key == "panel.no_gpio"


off_a_pi = pytest.mark.skipif(platform.machine() in ("aarch64", "armv7l"),
                              reason="on a Pi a real backend may well work")


@off_a_pi
def test_without_pi_backends_the_error_says_what_to_do() -> None:
    with pytest.raises(NoGpioBackend) as e:
        choose_pin_factory({})
    msg = e.value.message
    assert "rpigpio:" in msg and "lgpio:" in msg
    assert "edge[pi]" in msg and "--terminal" in msg and "GPIOZERO_PIN_FACTORY=mock" in msg


@off_a_pi
def test_rpi_gpio_that_raises_at_import_falls_through_to_lgpio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RPi.GPIO installs on x86_64 but refuses to import off a Pi (and on a Pi 5)."""
    pkg = tmp_path / "RPi"
    (pkg / "GPIO").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "GPIO" / "__init__.py").write_text(
        "raise RuntimeError('This module can only be run on a Raspberry Pi!')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("RPi", "RPi.GPIO", "gpiozero.pins.rpigpio"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(NoGpioBackend) as e:
        choose_pin_factory({})
    assert "rpigpio: RuntimeError: This module can only be run on a Raspberry Pi!" \
        in e.value.message
    assert "lgpio:" in e.value.message


# --- the terminal renderer -------------------------------------------------------------------

def test_terminal_prints_each_light_as_a_strip_a_name_and_a_meaning() -> None:
    out = io.StringIO()
    term = TerminalPanel(out)
    view = PanelView(NetState.CELLULAR, DataState.SAFE, SysState.OK)
    term.show(view.patterns(), view_notes(view))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[panel ")
    assert lines[1] == f"NET  {'▮' * 10}{'▯' * 10} slow blink        (online on 4G)"
    assert lines[2] == f"DATA {'▮' * 20} steady on         (recordings stored safely)"
    assert lines[3] == f"SYS  ▮{'▯' * 19} short pulse       (all programs running)"
    term.show(view.patterns(), view_notes(view))
    assert len(out.getvalue().splitlines()) == 4, "unchanged view printed again"
    other = PanelView(NetState.OFFLINE, DataState.SAFE, SysState.OK)
    term.show(other.patterns(), view_notes(other))
    assert "double flash" in out.getvalue().splitlines()[5]


def test_terminal_speaks_indonesian_too() -> None:
    view = PanelView(NetState.OFFLINE, DataState.REFUSING, SysState.FAULT)
    line = render_line(Led.DATA, view.data and shown(view.data).pattern,
                       view_notes(view, lang="id")[Led.DATA], lang="id")
    assert "berkedip cepat" in line and "tidak dapat menerima rekaman" in line


def test_notes_add_the_rule_when_it_says_more() -> None:
    view = PanelView(NetState.WIRED, DataState.REFUSING, SysState.FAULT)
    notes = view_notes(view, {Led.NET: "online on wired", Led.DATA: "intake program not running",
                              Led.SYS: "program down or stuck"})
    assert notes[Led.NET] == "online on wired"
    assert notes[Led.DATA] == "not accepting recordings: intake program not running"
    assert notes[Led.SYS] == "a program is down or stuck: program down or stuck"
    locate = PanelView(NetState.LOCATE, DataState.LOCATE, SysState.LOCATE)
    assert view_notes(locate, {led: "locate requested" for led in Led})[Led.NET] == "locate"
