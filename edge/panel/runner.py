"""The panel's loop: read a snapshot, derive the lights, show them, beat; again.

Place in the data flow: glues ``sources`` → ``state`` → ``driver``. ``step()`` does exactly
one round so a test (or the demo's own loop) can drive it; ``run()`` repeats it until told to
stop. The panel beats its own heartbeat with the view it shows, so telemetry can report what
the office sees.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Protocol

from edge.config import Config
from edge.health.heartbeat import PANEL, STATUS_ERROR, STATUS_OK, Heartbeat, runtime_dir
from edge.health.sdnotify import Notifier
from edge.panel.config import PanelConfig, parse_panel_config
from edge.panel.driver import PanelOutput, render_line
from edge.panel.patterns import Led, LedState, PanelView
from edge.panel.sources import (
    HEARTBEAT_SUBDIR,
    HeartbeatSpoolSource,
    LiveSources,
    SpoolSummarySource,
    is_provisioned,
)
from edge.panel.state import (
    DATA_RULES,
    NET_RULES,
    SYS_RULES,
    Derivation,
    Health,
    PanelInputs,
    PanelThresholds,
    derive_with_reasons,
)

__all__ = ["InputSource", "PanelRunner", "build_runner", "describe", "view_notes"]

log = logging.getLogger(__name__)


# States that more than one rule can pick: for these the rule says which cause it is.
_AMBIGUOUS: frozenset[LedState] = frozenset(
    rule.state
    for rules in (NET_RULES, DATA_RULES, SYS_RULES)
    for rule in rules
    if sum(1 for r in rules if r.state == rule.state) > 1
)


def view_notes(view: PanelView, reasons: Mapping[Led, str] | None = None,
               lang: str = "en") -> dict[Led, str]:
    """Each light's meaning; in English, plus the cause where one state has several."""
    notes = {}
    for led, state in view.states().items():
        note = view.shown()[led].meaning(lang)
        why = (reasons or {}).get(led)
        if why and lang == "en" and state in _AMBIGUOUS:
            note = f"{note}: {why}"
        notes[led] = note
    return notes


class InputSource(Protocol):
    def read(self) -> PanelInputs: ...


class PanelRunner:
    def __init__(self, sources: InputSource, output: PanelOutput, *,
                 thresholds: PanelThresholds | None = None, heartbeat: Heartbeat | None = None,
                 lang: str = "en") -> None:
        self.sources = sources
        self.output = output
        self.thresholds = thresholds or PanelThresholds()
        self.heartbeat = heartbeat
        self.lang = lang

    def step(self) -> Derivation:
        d = derive_with_reasons(self.sources.read(), self.thresholds)
        self.output.show(d.view.patterns(), view_notes(d.view, d.reasons, self.lang))
        if self.heartbeat is not None:
            self.heartbeat.beat(STATUS_OK, {led.value.lower(): s.value
                                            for led, s in d.view.states().items()})
        return d

    def run(self, stop: threading.Event, interval_s: float = 2.0) -> None:
        """Step every ``interval_s`` until ``stop`` is set. A failing step is logged and
        retried next round (and reported in the panel's heartbeat), not fatal. Under systemd
        (Type=notify) the loop itself pings the watchdog: a stuck panel gets restarted."""
        notifier = Notifier()
        ready = False
        while not stop.is_set():
            try:
                self.step()
                if not ready:
                    notifier.ready(status="showing the status lights")
                    ready = True
                notifier.ping()
            except Exception as e:
                log.exception("panel step failed")
                if self.heartbeat is not None:
                    self.heartbeat.beat(STATUS_ERROR, {"error": f"{type(e).__name__}: {e}"})
            stop.wait(interval_s)
        notifier.stopping()


def build_runner(cfg: Config, output: PanelOutput, *, spool: SpoolSummarySource | None = None,
                 panel: PanelConfig | None = None, lang: str | None = None) -> PanelRunner:
    """The panel as ``edge panel`` runs it, on ``output``.

    ``spool``: a live ``SpoolSummarySource`` (e.g. an ``edge.spool.Spool`` the caller already
    has open); by default the summary the spool's owner publishes in its heartbeat.
    """
    pcfg = panel or parse_panel_config(cfg)
    run_dir = runtime_dir(cfg.device.state_dir)
    hb_dir = run_dir / HEARTBEAT_SUBDIR
    if spool is None:
        spool = HeartbeatSpoolSource(hb_dir, pcfg.spool_summary_from, pcfg.stale_after_s)
    sources = LiveSources(run_dir, spool=spool, provisioned=lambda: is_provisioned(cfg),
                          stale_after=pcfg.stale_after_s)
    return PanelRunner(sources, output, thresholds=pcfg.thresholds,
                       heartbeat=Heartbeat(hb_dir, PANEL), lang=lang or pcfg.lang)


_HEALTH_ID = {Health.RUNNING: "berjalan", Health.AWAITED: "ditunggu", Health.FAILING: "gagal",
              Health.DOWN: "mati"}


def describe(d: Derivation, lang: str = "en", *, lights: bool = True) -> str:
    """What the lights show and why, for a technician's terminal."""
    notes: Mapping[Led, str] = view_notes(d.view, d.reasons, lang)
    lines = [render_line(led, s.pattern, notes[led], lang)
             for led, s in d.view.shown().items()] if lights else []
    if d.programs:
        words = _HEALTH_ID if lang == "id" else {h: h.value for h in Health}
        label = "program" if lang == "id" else "programs"
        lines.append(f"{label}: " + ", ".join(f"{p} {words[h]}" for p, h in d.programs.items()))
    return "\n".join(lines)
