"""Status lights for office staff: NET, DATA and SYS, told apart by timing, not colour.

Data flow inside the panel: ``sources`` (heartbeats, uplink.json, spool summary, locate)
→ ``state.derive`` (one state per light, pure) → ``patterns`` (state → timing sequence,
pure) → ``driver`` (gpiozero LEDs, or a terminal). ``runner`` loops over those steps;
``cli`` is ``edge panel``; ``legend`` prints the staff legend (docs/led-legend.md).

Terminal panel for the all-in-one demo::

    from edge.panel import TerminalPanel, build_runner
    runner = build_runner(cfg, TerminalPanel(), spool=spool)   # spool: optional
    runner.step()          # once per tick of the demo's loop, or runner.run(stop_event)
"""

from edge.panel.config import PanelConfig, parse_panel_config
from edge.panel.driver import GpioPanel, PanelOutput, TerminalPanel, choose_pin_factory
from edge.panel.errors import NoGpioBackend, PanelError, SpoolSummaryUnavailable
from edge.panel.patterns import DataState, Led, NetState, PanelView, Pattern, SysState
from edge.panel.runner import PanelRunner, build_runner, describe
from edge.panel.sources import (
    HeartbeatSpoolSource,
    LiveSources,
    SpoolSummary,
    SpoolSummaryData,
    SpoolSummarySource,
    spool_summary_detail,
    write_locate,
)
from edge.panel.state import PanelInputs, PanelThresholds, derive, derive_with_reasons

__all__ = [
    "DataState",
    "GpioPanel",
    "HeartbeatSpoolSource",
    "Led",
    "LiveSources",
    "NetState",
    "NoGpioBackend",
    "PanelConfig",
    "PanelError",
    "PanelInputs",
    "PanelOutput",
    "PanelRunner",
    "PanelThresholds",
    "PanelView",
    "Pattern",
    "SpoolSummary",
    "SpoolSummaryData",
    "SpoolSummarySource",
    "SpoolSummaryUnavailable",
    "SysState",
    "TerminalPanel",
    "build_runner",
    "choose_pin_factory",
    "derive",
    "derive_with_reasons",
    "describe",
    "parse_panel_config",
    "spool_summary_detail",
    "write_locate",
]
