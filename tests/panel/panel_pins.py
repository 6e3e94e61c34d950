"""Helpers to check what a gpiozero MockPin actually showed against a pattern."""

from __future__ import annotations

from typing import Any

from edge.panel.patterns import Pattern

# MockPin.states holds (seconds since the previous change, new level); the first entry is
# (0.0, level when the record was cleared).
MARGIN_S = 0.15


def expected_states(p: Pattern, window_s: float, initial: bool = False
                    ) -> list[tuple[float, bool]]:
    """The record a perfect LED would leave when ``p`` starts at t=0 and runs ``window_s``."""
    out = [(0.0, initial)]
    level, last_change, t, i = initial, 0.0, 0.0, 0
    while t < window_s:
        lit, seconds = p.steps[i % len(p.steps)]
        if lit != level:
            out.append((t - last_change, lit))
            level, last_change = lit, t
        t += seconds
        i += 1
    return out


def assert_shows(pin: Any, p: Pattern, window_s: float, states: list[Any] | None = None
                 ) -> None:
    """The pin went through ``p``'s timing (gpiozero's tolerance) and nothing else."""
    recorded = list(pin.states if states is None else states)
    initial = bool(recorded[0].state)
    fewest = expected_states(p, window_s - MARGIN_S, initial)
    most = expected_states(p, window_s + MARGIN_S, initial)
    assert len(fewest) <= len(recorded) <= len(most), (
        f"{p.key}: {len(recorded)} changes recorded, expected {len(fewest)}-{len(most)}: "
        f"{[(round(s.timestamp, 3), s.state) for s in recorded]}")
    # assert_states_and_times zips, so the count check above is what catches extra changes.
    original = pin.states
    try:
        pin.states = recorded
        pin.assert_states_and_times(most)
    finally:
        pin.states = original
