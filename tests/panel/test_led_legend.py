"""The printed legend matches the lights: same table, every row reachable, no colours."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edge.panel.legend import SITUATIONS, Situation, render_markdown
from edge.panel.patterns import DataState, Led, NetState, SysState
from edge.panel.state import derive
from tests.panel.panel_snapshots import OTHER_BOOT, STALE, hb, inputs

LEGEND = Path(__file__).resolve().parents[2] / "docs" / "led-legend.md"

# A snapshot that produces each row of the legend that is a state of the panel.
SNAPSHOTS: dict[str, dict[str, Any]] = {
    "normal": {},
    "online-4g": {"uplink_active": "4g"},
    "offline": {"uplink_active": None, "backlog_count": 150},
    "backlog": {"uplink_active": None, "backlog_oldest_age_s": 8 * 3600.0},
    "nearly-full": {"spool_free_fraction": 0.04},
    "refusing": {"spool_refusing": True, "spool_free_fraction": 0.0},
    "program-down": {"heartbeats": hb(forward=STALE)},
    "starting": {"uptime_s": 25.0, "uplink_known": False,
                 "heartbeats": hb(forward=OTHER_BOOT, uplink=None)},
    "not-provisioned": {"provisioned": False, "spool_known": False, "heartbeats": {}},
    "locate": {"locate_until": 4000.0},
}
NOT_PANEL_STATES = {"no-power", "panel-frozen"}


def test_the_legend_in_docs_is_the_generated_one() -> None:
    assert LEGEND.read_text(encoding="utf-8") == render_markdown(), (
        "docs/led-legend.md is out of date: python -m edge.panel.legend > docs/led-legend.md")


@pytest.mark.parametrize("situation", SITUATIONS, ids=lambda s: s.key)
def test_each_row_is_what_the_panel_shows_in_that_situation(situation: Situation) -> None:
    if situation.key in NOT_PANEL_STATES:
        assert situation.lights_id and situation.lights_en and not situation.states()
        return
    view = derive(inputs(**SNAPSHOTS[situation.key])).states()
    for led, state in situation.states().items():
        assert view[led] is state, f"{situation.key}: {led.value}"


def test_rows_are_told_apart_by_their_lights() -> None:
    keys = [tuple(sorted((led.value, st.value) for led, st in s.states().items()))
            for s in SITUATIONS if s.states() and s.lights_en is None]
    assert len(set(keys)) == len(keys)
    custom = [s.lights_en for s in SITUATIONS if s.lights_en is not None]
    assert len(set(custom)) == len(custom)


def test_every_state_of_every_light_is_explained_somewhere() -> None:
    covered = {(led, state) for s in SITUATIONS for led, state in s.states().items()}
    # NET "unknown" (dark) only happens together with SYS starting or SYS program down,
    # whose rows say so.
    explained_elsewhere = {(Led.NET, NetState.UNKNOWN)}
    everything = {*((Led.NET, s) for s in NetState), *((Led.DATA, s) for s in DataState),
                  *((Led.SYS, s) for s in SysState)}
    assert everything - covered == explained_elsewhere


def test_every_row_has_both_languages_and_an_answer_to_keep_recording() -> None:
    for s in SITUATIONS:
        for text in (s.record_id, s.meaning_id, s.action_id,
                     s.record_en, s.meaning_en, s.action_en):
            assert text.strip()
        assert s.meaning_id != s.meaning_en


def test_the_legend_never_relies_on_colour() -> None:
    colours = r"\b(merah|hijau|kuning|biru|oranye|jingga|putih|red|green|yellow|blue|amber|" \
              r"orange|white)\b"
    assert not re.search(colours, render_markdown(), re.IGNORECASE)


def test_indonesian_comes_first() -> None:
    text = render_markdown()
    assert text.index("Lampu status alat") < text.index("Status lights on the")
