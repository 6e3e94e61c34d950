"""The ``[panel]`` table: which pins the LEDs are on, and when a condition changes a light.

Place in the data flow: read once at start by ``edge panel``; a bad value stops the panel
before it touches a pin, with the key, the value and the fix.

    [panel]
    net_pin = 17               # BCM numbers; physical pins 11, 13, 15 with ground on 9 or 14
    data_pin = 27
    sys_pin = 22
    active_high = true         # false when the LEDs are wired to 3.3 V and sink into the pin
    poll_interval_s = 2.0
    starting_grace_s = 180     # after boot, missing programs show "starting", not "down"
    backlog_warn_count = 200   # DATA blinks slowly at this many recordings waiting ...
    backlog_warn_age_s = 21600 # ... or when the oldest has waited this long (6 h)
    spool_low_fraction = 0.10  # DATA double-flashes below this much room left
    programs = ["intake", "forward", "uplink"]   # whose heartbeats SYS watches
    spool_summary_from = "intake"  # the program that publishes the spool summary
    lang = "en"                # terminal and --test text: "en" or "id"

    [panel.stale_after_s]      # per-program heartbeat limits (defaults in edge.health)
    forward = 90
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edge.config import Config
from edge.errors import ConfigError
from edge.health.heartbeat import INTAKE, PROGRAM_RE, UPLINK
from edge.panel.patterns import Led
from edge.panel.state import PanelThresholds

__all__ = ["LANGS", "PanelConfig", "parse_panel_config"]

LANGS = ("en", "id")
_MAX_BCM = 27


@dataclass(frozen=True)
class PanelConfig:
    pins: Mapping[Led, int] = field(
        default_factory=lambda: {Led.NET: 17, Led.DATA: 27, Led.SYS: 22})
    active_high: bool = True
    poll_interval_s: float = 2.0
    thresholds: PanelThresholds = field(default_factory=PanelThresholds)
    stale_after_s: Mapping[str, float] = field(default_factory=dict)
    spool_summary_from: str = INTAKE
    lang: str = "en"


def _program(value: object) -> str:
    if not isinstance(value, str) or not PROGRAM_RE.match(value):
        raise ValueError("not a program name (lowercase letters, digits, '-')")
    return value


def parse_panel_config(cfg: Config) -> PanelConfig:
    s = cfg.section("panel")
    pins = {
        Led.NET: s.integer("net_pin", 17, min=0, max=_MAX_BCM),
        Led.DATA: s.integer("data_pin", 27, min=0, max=_MAX_BCM),
        Led.SYS: s.integer("sys_pin", 22, min=0, max=_MAX_BCM),
    }
    if len(set(pins.values())) != len(pins):
        raise ConfigError(
            f"{cfg.source}: [panel] net_pin, data_pin and sys_pin = "
            f"{[pins[led] for led in Led]}: each light needs its own GPIO pin")
    programs = tuple(s.list_of("programs", _program, ["intake", "forward", "uplink"]))
    thresholds = PanelThresholds(
        starting_grace_s=s.number("starting_grace_s", 180.0, min=0.0),
        backlog_warn_count=s.integer("backlog_warn_count", 200, min=1),
        backlog_warn_age_s=s.number("backlog_warn_age_s", 6 * 3600.0, min=1.0),
        spool_low_fraction=s.number("spool_low_fraction", 0.10, min=0.0, max=1.0),
        programs=programs,
        intake_program=INTAKE,
        uplink_program=UPLINK,
    )
    stale = s.sub("stale_after_s")
    stale_after = {}
    for program in sorted(stale.data):
        if not PROGRAM_RE.match(program):
            raise ConfigError(f"{cfg.source}: [panel.stale_after_s] {program!r}: "
                              "not a program name (lowercase letters, digits, '-')")
        stale_after[program] = stale.number(program, 60.0, min=1.0)
    stale.check_unknown()
    spool_from = s.text("spool_summary_from", INTAKE, pattern=PROGRAM_RE,
                        hint="must be a program name such as \"intake\"")
    panel = PanelConfig(
        pins=pins,
        active_high=s.flag("active_high", True),
        poll_interval_s=s.number("poll_interval_s", 2.0, min=0.2, max=60.0),
        thresholds=thresholds,
        stale_after_s=stale_after,
        spool_summary_from=spool_from,
        lang=s.text("lang", "en", choices=LANGS),
    )
    s.check_unknown()
    return panel
