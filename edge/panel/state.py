"""From a snapshot of the appliance to one state per status light: pure, no I/O, no clock.

Place in the data flow: ``sources.py`` reads heartbeats, ``uplink.json``, the spool summary
and the locate request into a ``PanelInputs`` snapshot; ``derive()`` here picks each light's
state; ``patterns.py`` says how that state looks; ``driver.py`` shows it.

Theory of operation
-------------------
Each light has an ordered rule table; the first rule whose condition holds picks the state,
and every table ends in a rule that always holds, so the mapping is total by construction.
The same snapshot always gives the same view (no clock is read here: "now" is
``inputs.uptime_s``, on the same CLOCK_BOOTTIME as heartbeats and the locate expiry).

Program health, for each program the panel expects (``thresholds.programs``):

    running    fresh heartbeat, status not error/stopped (status "starting" counts as
               awaited during the start-up grace, as running after it)
    awaited    no heartbeat from this boot yet, and the box booted less than
               ``starting_grace_s`` ago
    failing    it says so itself: status "error" or "stopped"
    down       stale heartbeat (crashed or stuck), or none at all after the grace

Priorities, highest first:

    NET   locate > uplink program failing/down (its file may be out of date) > no uplink
          status > wired > 4G > offline
    DATA  locate > not provisioned (nothing to show) > spool refusing > intake failing/down
          (nothing accepts recordings: same advice as refusing) > spool summary unknown >
          intake awaited > nearly full > backlog large or old > stored safely
    SYS   locate > not provisioned > any program failing/down > after the grace: spool
          summary or uplink status still missing > start-up (something awaited) > running

The question office staff ask is "is it safe to keep recording?"; DATA answers it. DATA
never shows "stored safely", "backlog" or "nearly full" unless the spool summary is known,
the spool accepts recordings and the intake program is running (a property test checks it).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from edge.health.heartbeat import (
    FORWARDER,
    INTAKE,
    STATUS_ERROR,
    STATUS_STARTING,
    STATUS_STOPPED,
    UPLINK,
    HeartbeatInfo,
)
from edge.panel.patterns import DataState, Led, NetState, PanelView, SysState

__all__ = [
    "DATA_RULES",
    "NET_RULES",
    "SYS_RULES",
    "Derivation",
    "Health",
    "PanelInputs",
    "PanelThresholds",
    "Rule",
    "UplinkKind",
    "derive",
    "derive_with_reasons",
]

UplinkKind = Literal["wired", "4g"]


@dataclass(frozen=True)
class PanelInputs:
    """Everything the panel looks at, read at one moment.

    ``uptime_s`` is CLOCK_BOOTTIME now; ``locate_until`` is on the same clock.
    ``uplink_active`` None means offline, but only when ``uplink_known``; likewise the spool
    fields mean something only when ``spool_known``. ``spool_free_fraction`` is the room
    left for new recordings as a fraction of the spool quota (0 = full).
    """

    provisioned: bool
    uptime_s: float
    uplink_active: UplinkKind | None
    uplink_known: bool
    backlog_count: int
    backlog_oldest_age_s: float | None
    spool_free_fraction: float
    spool_refusing: bool
    heartbeats: Mapping[str, HeartbeatInfo] = field(default_factory=dict)
    locate_until: float | None = None
    spool_known: bool = True


@dataclass(frozen=True)
class PanelThresholds:
    """When a condition becomes worth a different light. Set in ``[panel]``."""

    starting_grace_s: float = 180.0
    backlog_warn_count: int = 200          # about a day's recordings in a busy office
    backlog_warn_age_s: float = 6 * 3600.0
    spool_low_fraction: float = 0.10
    programs: tuple[str, ...] = (INTAKE, FORWARDER, UPLINK)
    intake_program: str = INTAKE
    uplink_program: str = UPLINK


class Health(enum.Enum):
    RUNNING = "running"
    AWAITED = "awaited"
    FAILING = "failing"
    DOWN = "down"


_BAD = (Health.FAILING, Health.DOWN)


def _health(info: HeartbeatInfo | None, starting: bool) -> Health:
    if info is None:
        return Health.AWAITED if starting else Health.DOWN
    if info.status in (STATUS_ERROR, STATUS_STOPPED):
        return Health.FAILING
    if info.stale:
        # age is infinite for a beat from an earlier boot: during start-up that program
        # simply has not beaten yet in this boot.
        return Health.AWAITED if starting and math.isinf(info.age_s) else Health.DOWN
    if info.status == STATUS_STARTING and starting:
        return Health.AWAITED
    return Health.RUNNING


@dataclass(frozen=True)
class _Facts:
    locating: bool
    provisioned: bool
    starting: bool
    health: Mapping[str, Health]
    intake: Health | None          # None: the intake is not an expected program
    uplink: Health | None
    uplink_known: bool
    uplink_active: object
    spool_known: bool
    refusing: bool
    free_fraction: float
    backlog_count: int
    oldest_age_s: float | None
    th: PanelThresholds

    @property
    def any_bad(self) -> bool:
        return any(h in _BAD for h in self.health.values())

    @property
    def any_awaited(self) -> bool:
        return any(h is Health.AWAITED for h in self.health.values())

    @property
    def uplink_expected(self) -> bool:
        return self.uplink is not None

    @property
    def backlog_large_or_old(self) -> bool:
        old = self.oldest_age_s is not None and self.oldest_age_s >= self.th.backlog_warn_age_s
        return self.backlog_count >= self.th.backlog_warn_count or old


def _facts(i: PanelInputs, th: PanelThresholds) -> _Facts:
    starting = i.uptime_s < th.starting_grace_s
    health = {p: _health(i.heartbeats.get(p), starting) for p in th.programs}
    return _Facts(
        locating=i.locate_until is not None and i.uptime_s < i.locate_until,
        provisioned=i.provisioned,
        starting=starting,
        health=health,
        intake=health.get(th.intake_program),
        uplink=health.get(th.uplink_program),
        uplink_known=i.uplink_known,
        uplink_active=i.uplink_active,
        spool_known=i.spool_known and math.isfinite(i.spool_free_fraction),
        refusing=i.spool_refusing,
        free_fraction=i.spool_free_fraction,
        backlog_count=i.backlog_count,
        oldest_age_s=i.backlog_oldest_age_s,
        th=th,
    )


S = TypeVar("S", NetState, DataState, SysState)


@dataclass(frozen=True)
class Rule(Generic[S]):
    reason: str
    when: Callable[[_Facts], bool]
    state: S


def _always(f: _Facts) -> bool:
    return True


NET_RULES: tuple[Rule[NetState], ...] = (
    Rule("locate requested", lambda f: f.locating, NetState.LOCATE),
    Rule("uplink program not running", lambda f: f.uplink in _BAD, NetState.UNKNOWN),
    Rule("no uplink status yet", lambda f: not f.uplink_known, NetState.UNKNOWN),
    Rule("online on wired", lambda f: f.uplink_active == "wired", NetState.WIRED),
    Rule("online on 4G", lambda f: f.uplink_active == "4g", NetState.CELLULAR),
    Rule("offline", lambda f: f.uplink_active is None, NetState.OFFLINE),
    Rule("unrecognised uplink status", _always, NetState.UNKNOWN),
)

DATA_RULES: tuple[Rule[DataState], ...] = (
    Rule("locate requested", lambda f: f.locating, DataState.LOCATE),
    Rule("not provisioned", lambda f: not f.provisioned, DataState.UNKNOWN),
    Rule("spool refusing new recordings", lambda f: f.spool_known and f.refusing,
         DataState.REFUSING),
    Rule("intake program not running", lambda f: f.intake in _BAD, DataState.REFUSING),
    Rule("spool summary unavailable", lambda f: not f.spool_known, DataState.UNKNOWN),
    Rule("intake starting", lambda f: f.intake is Health.AWAITED, DataState.UNKNOWN),
    Rule("spool nearly full", lambda f: f.free_fraction < f.th.spool_low_fraction,
         DataState.NEARLY_FULL),
    Rule("backlog large or old", lambda f: f.backlog_large_or_old, DataState.BACKLOG),
    Rule("stored safely", _always, DataState.SAFE),
)

SYS_RULES: tuple[Rule[SysState], ...] = (
    Rule("locate requested", lambda f: f.locating, SysState.LOCATE),
    Rule("not provisioned", lambda f: not f.provisioned, SysState.NOT_PROVISIONED),
    Rule("program down or stuck", lambda f: f.any_bad, SysState.FAULT),
    Rule("spool summary unavailable", lambda f: not f.starting and not f.spool_known,
         SysState.FAULT),
    Rule("uplink status not published",
         lambda f: not f.starting and f.uplink_expected and not f.uplink_known, SysState.FAULT),
    Rule("starting up",
         lambda f: f.any_awaited or not f.spool_known
         or (f.uplink_expected and not f.uplink_known),
         SysState.STARTING),
    Rule("all programs running", _always, SysState.OK),
)


def _first(rules: tuple[Rule[S], ...], facts: _Facts) -> Rule[S]:
    for rule in rules:
        if rule.when(facts):
            return rule
    raise AssertionError("rule table without a final catch-all")  # pragma: no cover


@dataclass(frozen=True)
class Derivation:
    """The view, plus why: the rule that picked each light and each program's health."""

    view: PanelView
    reasons: Mapping[Led, str]
    programs: Mapping[str, Health]


def derive_with_reasons(inputs: PanelInputs,
                        thresholds: PanelThresholds | None = None) -> Derivation:
    facts = _facts(inputs, thresholds or PanelThresholds())
    net = _first(NET_RULES, facts)
    data = _first(DATA_RULES, facts)
    sys_ = _first(SYS_RULES, facts)
    return Derivation(
        view=PanelView(net=net.state, data=data.state, sys=sys_.state),
        reasons={Led.NET: net.reason, Led.DATA: data.reason, Led.SYS: sys_.reason},
        programs=dict(facts.health),
    )


def derive(inputs: PanelInputs, thresholds: PanelThresholds | None = None) -> PanelView:
    """One state per light for this snapshot."""
    return derive_with_reasons(inputs, thresholds).view
