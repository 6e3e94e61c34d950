"""Uplink failover policy: which link carries the office's traffic. Pure logic, no I/O.

The uplink daemon (``daemon.py``) feeds it probe results and netlink facts and carries out the
``Switch`` it returns (routes, announcement). Tests drive it in memory with a fake clock.

Theory of operation
-------------------
Inputs are events stamped with a monotonic clock (CLOCK_BOOTTIME seconds): a probe result for
a link, a carrier change or an address change from netlink, and ``Tick`` (time has passed).
The caller feeds them in time order to ``Policy.handle(event)``, which returns a ``Switch``
when traffic must move to another link, else None. ``Policy.next_deadline()`` says when a
``Tick`` could change something; ``Policy.probe_interval(link)`` how often to probe a link.

Two layers, each a table below:

1. LINK_TRANSITIONS: each link's health, UNKNOWN -> UP / DOWN.
   * FALL: ``fail_after`` failed probes in a row -> DOWN.
   * LOST: carrier or address gone for ``carrier_grace_s`` -> DOWN. The loss counts *at once*
     as a bad signal (it clears the good streak and restarts the hold-down clock); only the
     move to DOWN waits for the grace, so a cable wiggle does not switch. The kernel reports a
     quick carrier-up up to ~1 s late, so a probe that *started after* the loss and succeeded
     is taken as proof the link is back and ends the grace early.
   * RISE: ``rise_after`` good probes in a row, with carrier and address -> UP.
   A link is *confirmed* ("clean since" a time) once it is UP, present, and has had
   ``rise_after`` good probes since its last bad signal; any bad signal unconfirms it. Only a
   confirmed link is ever switched to.

2. SELECTOR_TRANSITIONS: which link is active. The situation is computed from the links'
   health after every event, then looked up with the current state:
   * NO_LINK (start): take the preferred link as soon as it is UP; a less preferred one only
     once every better link is DOWN or ``startup_wait_s`` has passed.
   * STEADY: the active link is not DOWN and no better link is UP.
   * FAILBACK_PENDING: a better link is confirmed but not yet clean for ``holddown_s``.
   * STRANDED: the active link is DOWN and no other link is confirmed; stay (switching
     cannot help).
   The active link is left only when it is DOWN (failover, to the best confirmed link) or
   when a better link has been clean for the whole hold-down (failback). So moving to a worse link
   needs the active one to be DOWN, and moving back needs ``holddown_s`` without a single bad
   signal: short bursts below the thresholds never switch, and there is at most one round
   trip per hold-down.

Bounds (defaults: probe interval 1 s, timeout 1 s, fail_after 3, carrier_grace_s 1.5 s):
   carrier loss -> switch ``carrier_grace_s`` later (1.5 s, plus ~10 ms netlink latency);
   silent loss  -> switch at the 3rd failed probe: at most 3 * interval + timeout = 4 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edge.uplink.config import LinkConfig, PolicyConfig

__all__ = [
    "ACTIVE_ALONE",
    "ACTIVE_FAILED",
    "ALL_CLEAR",
    "BETTER_READY",
    "BETTER_WAITING",
    "DOWN",
    "FAILBACK_PENDING",
    "FALL",
    "FIRST_PICK",
    "LINK_TRANSITIONS",
    "LOST",
    "NO_LINK",
    "RISE",
    "SELECTOR_TRANSITIONS",
    "STEADY",
    "STRANDED",
    "UNKNOWN",
    "UP",
    "WAITING",
    "AddressChanged",
    "CarrierChanged",
    "Event",
    "LinkView",
    "Policy",
    "ProbeResult",
    "Switch",
    "Tick",
]

# --- link health states and triggers ---------------------------------------------------------
UNKNOWN: Final = "unknown"
UP: Final = "up"
DOWN: Final = "down"

RISE: Final = "rise"  # rise_after good probes in a row, carrier and address present
FALL: Final = "fall"  # fail_after failed probes in a row
LOST: Final = "lost"  # carrier or address missing for carrier_grace_s

LINK_TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    (UNKNOWN, RISE): UP,
    (UNKNOWN, FALL): DOWN,
    (UNKNOWN, LOST): DOWN,
    (UP, FALL): DOWN,
    (UP, LOST): DOWN,
    (DOWN, RISE): UP,
}

# --- selector states and situations ----------------------------------------------------------
NO_LINK: Final = "no_link"
STEADY: Final = "steady"
FAILBACK_PENDING: Final = "failback_pending"
STRANDED: Final = "stranded"

FIRST_PICK: Final = "first_pick"          # nothing active; a link may be taken
WAITING: Final = "waiting"                # nothing active; nothing may be taken yet
ACTIVE_FAILED: Final = "active_failed"    # active DOWN; another link is confirmed
ACTIVE_ALONE: Final = "active_alone"      # active DOWN; no other link is confirmed
BETTER_READY: Final = "better_ready"      # active usable; a better link clean for the hold-down
BETTER_WAITING: Final = "better_waiting"  # active usable; a better link confirmed, hold-down on
ALL_CLEAR: Final = "all_clear"            # active usable; no better link confirmed

# state -> situation -> (next state, switch reason or None)
SELECTOR_TRANSITIONS: Final[dict[str, dict[str, tuple[str, str | None]]]] = {
    NO_LINK: {
        FIRST_PICK: (STEADY, "start"),
        WAITING: (NO_LINK, None),
    },
    STEADY: {
        ACTIVE_FAILED: (STEADY, "failover"),
        ACTIVE_ALONE: (STRANDED, None),
        BETTER_READY: (STEADY, "failback"),
        BETTER_WAITING: (FAILBACK_PENDING, None),
        ALL_CLEAR: (STEADY, None),
    },
    FAILBACK_PENDING: {
        ACTIVE_FAILED: (STEADY, "failover"),
        ACTIVE_ALONE: (STRANDED, None),
        BETTER_READY: (STEADY, "failback"),
        BETTER_WAITING: (FAILBACK_PENDING, None),
        ALL_CLEAR: (STEADY, None),
    },
    STRANDED: {
        ACTIVE_FAILED: (STEADY, "failover"),
        ACTIVE_ALONE: (STRANDED, None),
        BETTER_READY: (STEADY, "failback"),
        BETTER_WAITING: (FAILBACK_PENDING, None),
        ALL_CLEAR: (STEADY, None),
    },
}


# --- events ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeResult:
    link: str
    ok: bool
    at: float                          # when the result was known
    started_at: float | None = None    # when the probe left; None: unknown
    rtt_ms: float | None = None
    error: str = ""


@dataclass(frozen=True)
class CarrierChanged:
    link: str
    carrier: bool
    at: float


@dataclass(frozen=True)
class AddressChanged:
    link: str
    present: bool
    at: float


@dataclass(frozen=True)
class Tick:
    at: float


Event = ProbeResult | CarrierChanged | AddressChanged | Tick


@dataclass(frozen=True)
class Switch:
    from_link: str | None
    to_link: str
    reason: str  # "start", "failover" or "failback"
    at: float


@dataclass(frozen=True)
class LinkView:
    """A read-only picture of one link for status output."""

    name: str
    health: str
    carrier: bool | None
    address: bool | None
    ok_streak: int
    fail_streak: int
    up_since: float | None
    clean_since: float | None
    last_bad_at: float | None
    lost_since: float | None
    last_probe_at: float | None
    last_probe_ok: bool | None
    last_ok_at: float | None
    last_rtt_ms: float | None
    last_error: str

    @property
    def healthy(self) -> bool:
        return self.health == UP


class _Link:
    def __init__(self, cfg: LinkConfig) -> None:
        self.cfg = cfg
        self.health: str = UNKNOWN
        self.carrier: bool | None = None
        self.address: bool | None = None
        self.ok_streak = 0
        self.fail_streak = 0
        self.up_since: float | None = None
        self.clean_since: float | None = None
        self.last_bad_at: float | None = None
        self.lost_since: float | None = None
        self.last_probe_at: float | None = None
        self.last_probe_ok: bool | None = None
        self.last_ok_at: float | None = None
        self.last_rtt_ms: float | None = None
        self.last_error = ""

    def present(self) -> bool:
        return self.carrier is not False and self.address is not False

    def bad(self, now: float) -> None:
        self.ok_streak = 0
        self.clean_since = None
        self.last_bad_at = now

    def view(self) -> LinkView:
        return LinkView(
            name=self.cfg.name, health=self.health, carrier=self.carrier, address=self.address,
            ok_streak=self.ok_streak, fail_streak=self.fail_streak, up_since=self.up_since,
            clean_since=self.clean_since, last_bad_at=self.last_bad_at, lost_since=self.lost_since,
            last_probe_at=self.last_probe_at, last_probe_ok=self.last_probe_ok,
            last_ok_at=self.last_ok_at, last_rtt_ms=self.last_rtt_ms, last_error=self.last_error,
        )


class Policy:
    """Health of every link and the choice of the active one; see Theory of operation."""

    def __init__(self, cfg: PolicyConfig, links: tuple[LinkConfig, ...] | list[LinkConfig],
                 now: float) -> None:
        if not links:
            raise ValueError("no links")
        self.cfg = cfg
        self._links = {link.name: _Link(link) for link in sorted(links, key=lambda x: x.rank)}
        self._started = now
        self._now = now
        self.state: str = NO_LINK
        self.active: str | None = None
        self.switches = 0

    # --- queries --------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self._now

    @property
    def link_names(self) -> list[str]:
        return list(self._links)

    def view(self, name: str) -> LinkView:
        return self._links[name].view()

    def probe_interval(self, name: str) -> float:
        """How soon after its last probe the caller should probe ``name`` again."""
        link = self._links[name]
        if name == self.active:
            return link.cfg.interval_s
        if link.health == UNKNOWN or self._active_in_doubt():
            # Learn the state of a new link, or get a replacement ready while the active
            # link is failing: a standby link must be known UP before traffic can move to it.
            return link.cfg.urgent_interval_s
        return link.cfg.standby_interval_s

    def next_deadline(self) -> float | None:
        """The earliest time at which a Tick alone could change health or the active link."""
        times: list[float] = []
        for link in self._links.values():
            if link.lost_since is not None and link.health != DOWN:
                times.append(link.lost_since + self.cfg.carrier_grace_s)
        if self.state == NO_LINK:
            times.append(self._started + self.cfg.startup_wait_s)
        if self.active is not None:
            for link in self._better_confirmed():
                assert link.clean_since is not None
                times.append(link.clean_since + self.cfg.holddown_s)
        future = [t for t in times if t > self._now]
        return min(future) if future else None

    # --- input ----------------------------------------------------------------------------
    def handle(self, event: Event) -> Switch | None:
        now = self._now = max(self._now, event.at)
        if isinstance(event, ProbeResult):
            self._probe(self._links[event.link], event, now)
        elif isinstance(event, CarrierChanged):
            link = self._links[event.link]
            if not event.carrier:
                link.bad(now)
            link.carrier = event.carrier
            self._presence_changed(link, now)
        elif isinstance(event, AddressChanged):
            link = self._links[event.link]
            if not event.present:
                link.bad(now)
            link.address = event.present
            self._presence_changed(link, now)
        for link in self._links.values():
            self._update_health(link, now)
            self._confirm(link, now)
        return self._select(now)

    # --- link layer -----------------------------------------------------------------------
    def _probe(self, link: _Link, ev: ProbeResult, now: float) -> None:
        link.last_probe_at = now
        link.last_probe_ok = ev.ok
        link.last_rtt_ms = ev.rtt_ms
        link.last_error = ev.error
        if ev.ok:
            link.ok_streak += 1
            link.fail_streak = 0
            link.last_ok_at = now
            if (link.lost_since is not None and ev.started_at is not None
                    and ev.started_at >= link.lost_since):
                # Packets went through after the loss: the carrier/address is back even if
                # netlink has not said so yet.
                if link.carrier is False:
                    link.carrier = True
                if link.address is False:
                    link.address = True
                link.lost_since = None
        else:
            link.fail_streak += 1
            link.bad(now)

    def _presence_changed(self, link: _Link, now: float) -> None:
        if link.present():
            link.lost_since = None
        elif link.lost_since is None:
            link.lost_since = now

    def _trigger(self, link: _Link, now: float) -> str | None:
        # Same arithmetic as next_deadline(), so a Tick at the deadline fires exactly.
        if link.lost_since is not None and now >= link.lost_since + self.cfg.carrier_grace_s:
            return LOST
        if link.fail_streak >= self.cfg.fail_after:
            return FALL
        if link.ok_streak >= self.cfg.rise_after and link.present() and link.lost_since is None:
            return RISE
        return None

    def _update_health(self, link: _Link, now: float) -> None:
        trigger = self._trigger(link, now)
        if trigger is None:
            return
        new = LINK_TRANSITIONS.get((link.health, trigger))
        if new is None or new == link.health:
            return
        link.health = new
        link.up_since = now if new == UP else None
        link.clean_since = None

    def _confirm(self, link: _Link, now: float) -> None:
        if (link.clean_since is None and link.health == UP and link.present()
                and link.lost_since is None and link.ok_streak >= self.cfg.rise_after):
            link.clean_since = now

    # --- selector -------------------------------------------------------------------------
    def _active_in_doubt(self) -> bool:
        if self.active is None or self.state == STRANDED:
            return True
        a = self._links[self.active]
        return a.health != UP or a.fail_streak > 0 or a.lost_since is not None

    def _confirmed(self) -> list[_Link]:
        return [link for link in self._links.values() if link.clean_since is not None]

    def _better_confirmed(self) -> list[_Link]:
        assert self.active is not None
        rank = self._links[self.active].cfg.rank
        return [link for link in self._confirmed() if link.cfg.rank < rank]

    def _situation(self, now: float) -> tuple[str, str | None]:
        """The situation after this event, and the link a switch would go to."""
        if self.active is None:
            confirmed = self._confirmed()
            if not confirmed:
                return WAITING, None
            best = confirmed[0]
            better = [x for x in self._links.values() if x.cfg.rank < best.cfg.rank]
            waited = now >= self._started + self.cfg.startup_wait_s
            if waited or all(x.health == DOWN for x in better):
                return FIRST_PICK, best.cfg.name
            return WAITING, None
        active = self._links[self.active]
        if active.health == DOWN:
            others = [x for x in self._confirmed() if x is not active]
            if others:
                return ACTIVE_FAILED, others[0].cfg.name
            return ACTIVE_ALONE, None
        better = self._better_confirmed()
        ready = [x for x in better
                 if x.clean_since is not None and now >= x.clean_since + self.cfg.holddown_s]
        if ready:
            return BETTER_READY, ready[0].cfg.name
        if better:
            return BETTER_WAITING, None
        return ALL_CLEAR, None

    def _select(self, now: float) -> Switch | None:
        situation, target = self._situation(now)
        self.state, reason = SELECTOR_TRANSITIONS[self.state][situation]
        if reason is None:
            return None
        assert target is not None and target != self.active
        switch = Switch(from_link=self.active, to_link=target, reason=reason, at=now)
        self.active = target
        self.switches += 1
        # Settle the state for the new active link (FAILBACK_PENDING if an even better link
        # is still in its hold-down). A failover goes to the best UP link and a failback to
        # the best clean one, so this second look never asks for another switch.
        situation, _ = self._situation(now)
        self.state, again = SELECTOR_TRANSITIONS[self.state][situation]
        assert again is None, "two switches for one event"
        return switch
