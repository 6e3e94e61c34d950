"""Shows patterns on the three status LEDs through gpiozero, or as text in a terminal.

Place in the data flow: the last step. ``state.derive()`` picked a state per light,
``patterns.py`` turned it into a timing sequence; this module makes the light do it. It is a
thin adapter: the only decisions here are how to play a sequence and which pin factory to use.

Pin factory (how gpiozero reaches the pins):
- ``GPIOZERO_PIN_FACTORY`` in the environment wins, as everywhere in gpiozero (``mock`` for
  a dry run, ``lgpio``, ``rpigpio``, ``native``, ...);
- otherwise RPi.GPIO first (the backend of Raspberry Pi OS on a Pi 4 and older), then lgpio
  (the only one that works on a Pi 5, where RPi.GPIO cannot find the SoC and fails);
- neither installed, or neither works: ``NoGpioBackend`` says what to install, or to use
  ``--terminal``. Both backends are optional (extra ``edge[pi]``), installed on the device.

Playing a pattern: steady → ``LED.on()``/``LED.off()``; a plain on/off blink →
``LED.blink()`` (gpiozero's own background thread); anything longer (double flash) or
phase-locked (locate) → a small sequence thread that keeps to absolute deadlines from a start
instant shared by all three lights, so the locate run stays in order for as long as it lasts.
Showing the pattern a light already shows changes nothing (no restart, no glitch).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, TextIO

from edge.panel.errors import NoGpioBackend
from edge.panel.patterns import (
    ALL_PATTERNS,
    LOCATE_PATTERNS,
    OFF,
    Led,
    Pattern,
)

__all__ = [
    "AUTO_FACTORIES",
    "GpioPanel",
    "PanelOutput",
    "TerminalPanel",
    "WalkStep",
    "choose_pin_factory",
    "render_line",
    "run_walk",
    "walk_plan",
]

# Tried in this order when GPIOZERO_PIN_FACTORY is not set.
AUTO_FACTORIES: tuple[str, ...] = ("rpigpio", "lgpio")


def _factory_entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group="gpiozero_pin_factories")}


def choose_pin_factory(env: Mapping[str, str] | None = None) -> Any:
    """A gpiozero pin factory for this machine (see the module comment for the order)."""
    env = os.environ if env is None else env
    eps = _factory_entry_points()
    wanted = env.get("GPIOZERO_PIN_FACTORY")
    names = [wanted] if wanted else list(AUTO_FACTORIES)
    failures: list[str] = []
    for name in names:
        ep = eps.get(name) or eps.get(name.lower())
        if ep is None:
            failures.append(f"{name}: no such gpiozero pin factory "
                            f"(known: {', '.join(sorted(eps))})")
            continue
        try:
            return ep.load()()
        except Exception as e:  # ImportError off a Pi, RuntimeError on the wrong Pi, ...
            failures.append(f"{name}: {type(e).__name__}: {e}")
    if wanted:
        fix = ("unset GPIOZERO_PIN_FACTORY to choose automatically, or set it to one that "
               "works here (mock for a dry run)")
    else:
        fix = ("on the device install the Pi backends (pip install 'edge[pi]': RPi.GPIO for "
               "a Pi 4 or older, lgpio for a Pi 5); elsewhere run 'edge panel --terminal', "
               "or set GPIOZERO_PIN_FACTORY=mock for a dry run")
    raise NoGpioBackend(f"no GPIO backend can drive the status LEDs ({'; '.join(failures)}): "
                        f"{fix}")


class PanelOutput(Protocol):
    """Somewhere to show one pattern per light: LEDs, or a terminal."""

    def show(self, patterns: Mapping[Led, Pattern], notes: Mapping[Led, str]) -> None: ...

    def close(self) -> None: ...


def _gpio_thread_class() -> Any:
    from gpiozero.threads import GPIOThread
    return GPIOThread


class _SequencePlayer:
    """Plays a looping (lit?, seconds) sequence on one LED against absolute deadlines.

    Runs in a gpiozero ``GPIOThread`` so gpiozero's exit handler stops it before it closes
    the pins.
    """

    def __init__(self, led: Any, pattern: Pattern, epoch: float) -> None:
        self.led = led
        self.pattern = pattern
        self.epoch = epoch
        self.thread = _gpio_thread_class()(self._run, name=f"led-{pattern.key}")
        self.thread.start()

    def _run(self) -> None:
        stopping = self.thread.stopping
        period = self.pattern.period_s
        deadline = self.epoch
        while True:
            for lit, seconds in self.pattern.steps:
                if lit:
                    self.led.on()
                else:
                    self.led.off()
                deadline += seconds
                delay = deadline - time.monotonic()
                if delay < -period:
                    # Stalled for over a cycle (machine overloaded): start afresh from now
                    # rather than racing through the missed steps.
                    deadline = time.monotonic()
                    delay = 0.0
                if stopping.wait(max(0.0, delay)):
                    return

    def stop(self) -> None:
        self.thread.stop()


def _plain_blink(p: Pattern) -> tuple[float, float] | None:
    """(on, off) seconds when ``LED.blink()`` can play the pattern as it is."""
    if p.phase_locked or len(p.steps) != 2 or not p.steps[0][0]:
        return None
    return p.steps[0][1], p.steps[1][1]


class _Channel:
    def __init__(self, led: Any) -> None:
        self.led = led
        self.pattern: Pattern | None = None
        self._player: _SequencePlayer | None = None

    def play(self, pattern: Pattern, epoch: float) -> None:
        if pattern == self.pattern:
            return
        if self._player is not None:
            self._player.stop()
            self._player = None
        self.pattern = pattern
        blink = _plain_blink(pattern)
        if pattern.steady is True:
            self.led.on()
        elif pattern.steady is False:
            self.led.off()
        elif blink is not None:
            self.led.blink(on_time=blink[0], off_time=blink[1])
        else:
            # The player's first step sets the level (and stops any gpiozero blink thread):
            # switching the LED off first would add a flicker when the first step is lit.
            self._player = _SequencePlayer(self.led, pattern, epoch)

    def close(self) -> None:
        if self._player is not None:
            self._player.stop()
            self._player = None
        self.led.close()


class GpioPanel:
    """The three LEDs on the case, on GPIO pins (BCM numbers) from ``[panel]``."""

    def __init__(self, pins: Mapping[Led, int], *, active_high: bool = True,
                 pin_factory: Any = None) -> None:
        from gpiozero import LED

        factory = pin_factory if pin_factory is not None else choose_pin_factory()
        self.pin_factory = factory
        self.pins = dict(pins)
        self._channels: dict[Led, _Channel] = {}
        try:
            for led in Led:
                self._channels[led] = _Channel(
                    LED(pins[led], active_high=active_high, initial_value=False,
                        pin_factory=factory))
        except BaseException:
            self.close()
            raise

    def show(self, patterns: Mapping[Led, Pattern], notes: Mapping[Led, str] | None = None
             ) -> None:
        # One start instant for every light that changes now: phase-locked patterns (the
        # locate run) then stay in step with each other.
        epoch = time.monotonic()
        for led, channel in self._channels.items():
            channel.play(patterns.get(led, OFF), epoch)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


def render_line(led: Led, pattern: Pattern, note: str = "", lang: str = "en") -> str:
    """``NET  ▮▮▮▮▮▮▮▮▮▮▯▯▯▯▯▯▯▯▯▯ slow blink        (online on 4G)``"""
    line = f"{led.value:<4} {pattern.strip()} {pattern.name(lang):<17}"
    return f"{line} ({note})" if note else line.rstrip()


class TerminalPanel:
    """Prints the three lights as text where there are no LEDs (the all-in-one demo).

    Prints a block whenever what is shown changes, with the time of day for the reader.
    """

    def __init__(self, stream: TextIO | None = None, *, lang: str = "en",
                 title: str = "panel") -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.lang = lang
        self.title = title
        self._last: tuple[tuple[Pattern, str], ...] | None = None

    def render(self, patterns: Mapping[Led, Pattern], notes: Mapping[Led, str]) -> str:
        return "\n".join(render_line(led, patterns.get(led, OFF), notes.get(led, ""), self.lang)
                         for led in Led)

    def show(self, patterns: Mapping[Led, Pattern], notes: Mapping[Led, str] | None = None
             ) -> None:
        notes = notes or {}
        key = tuple((patterns.get(led, OFF), notes.get(led, "")) for led in Led)
        if key == self._last:
            return
        self._last = key
        stamp = time.strftime("%H:%M:%S")
        self.stream.write(f"[{self.title} {stamp}]\n{self.render(patterns, notes)}\n")
        self.stream.flush()

    def close(self) -> None:
        self._last = None


# --- the technician's LED test ---------------------------------------------------------------

@dataclass(frozen=True)
class WalkStep:
    patterns: Mapping[Led, Pattern]
    hold_s: float
    say_en: str
    say_id: str

    def say(self, lang: str = "en") -> str:
        return self.say_id if lang == "id" else self.say_en


def walk_plan(pins: Mapping[Led, int], *, leds: Sequence[Led] = tuple(Led),
              cycles: float = 2.0, min_hold_s: float = 3.0) -> list[WalkStep]:
    """Every chosen light through every pattern, one light at a time, then the locate run.

    One light at a time, so a technician sees at once when two wires are swapped: the light
    that moves is not the one named.
    """
    steps = []
    for led in leds:
        for p in ALL_PATTERNS:
            others = {o: OFF for o in Led if o is not led}
            steps.append(WalkStep(
                patterns={**others, led: p},
                hold_s=min_hold_s if p.steady is not None else max(min_hold_s,
                                                                    cycles * p.period_s),
                say_en=f"{led.value} (GPIO{pins[led]}): {p.name_en} - {p.how_en}. "
                       "The other lights are dark.",
                say_id=f"{led.value} (GPIO{pins[led]}): {p.name_id} - {p.how_id}. "
                       "Lampu lain mati.",
            ))
    locate = LOCATE_PATTERNS[Led.NET]
    steps.append(WalkStep(
        patterns=dict(LOCATE_PATTERNS),
        hold_s=max(min_hold_s, cycles * locate.period_s),
        say_en=f"All lights: {locate.name_en} - {locate.how_en}.",
        say_id=f"Semua lampu: {locate.name_id} - {locate.how_id}.",
    ))
    return steps


def run_walk(output: PanelOutput, plan: Sequence[WalkStep], *,
             say: Callable[[str], None], lang: str = "en",
             sleep: Callable[[float], None] = time.sleep) -> None:
    """Show each step for its hold time, telling the technician what should be seen."""
    try:
        for step in plan:
            say(step.say(lang))
            output.show(step.patterns, {})
            sleep(step.hold_s)
    finally:
        output.show({led: OFF for led in Led}, {})
