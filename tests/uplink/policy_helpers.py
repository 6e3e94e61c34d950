"""Drive the pure failover policy in memory with a fake clock, as the daemon would."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.uplink.config import LinkConfig, PolicyConfig
from edge.uplink.policy import (
    AddressChanged,
    CarrierChanged,
    Event,
    Policy,
    ProbeResult,
    Switch,
    Tick,
)

CFG = PolicyConfig(fail_after=3, rise_after=2, carrier_grace_s=1.5, holddown_s=60.0,
                   startup_wait_s=5.0)


def link(name: str, rank: int, **over: float) -> LinkConfig:
    values: dict[str, float] = {"interval_s": 1.0, "standby_interval_s": 30.0,
                                "urgent_interval_s": 1.0, "timeout_s": 1.0,
                                "tls_every_s": 300.0}
    values.update(over)
    return LinkConfig(name=name, interface=f"if{rank}", rank=rank, metered=rank > 0,
                      gateway="auto", table=101 + rank, rule_priority=1000 + 2 * rank,
                      metric=10 + rank, **values)  # type: ignore[arg-type]


LINKS = (link("wired", 0, standby_interval_s=1.0), link("4g", 1))


@dataclass
class Sim:
    """Feeds events in time order and fires Ticks at the policy's deadlines in between."""

    policy: Policy
    events: list[Event] = field(default_factory=list)
    switches: list[Switch] = field(default_factory=list)
    # for each switch, how many events had been fed when it happened (order, not just time)
    switch_after: list[int] = field(default_factory=list)

    @classmethod
    def new(cls, cfg: PolicyConfig = CFG, links: tuple[LinkConfig, ...] = LINKS,
            now: float = 0.0) -> Sim:
        return cls(Policy(cfg, links, now))

    @property
    def now(self) -> float:
        return self.policy.now

    def advance(self, to: float) -> None:
        while True:
            deadline = self.policy.next_deadline()
            if deadline is None or deadline > to:
                break
            self.feed(Tick(deadline))
        if to > self.now:
            self.feed(Tick(to))

    def feed(self, event: Event) -> Switch | None:
        self.advance_only(event.at)
        self.events.append(event)
        sw = self.policy.handle(event)
        if sw is not None:
            self.switches.append(sw)
            self.switch_after.append(len(self.events))
        return sw

    def advance_only(self, to: float) -> None:
        while True:
            deadline = self.policy.next_deadline()
            if deadline is None or deadline >= to:
                return
            self.events.append(Tick(deadline))
            sw = self.policy.handle(Tick(deadline))
            if sw is not None:
                self.switches.append(sw)
                self.switch_after.append(len(self.events))

    def probe(self, name: str, ok: bool, at: float, started: float | None = None) -> None:
        self.feed(ProbeResult(name, ok, at, started_at=at - 0.01 if started is None else started))

    def carrier(self, name: str, up: bool, at: float) -> None:
        self.feed(CarrierChanged(name, up, at))

    def address(self, name: str, present: bool, at: float) -> None:
        self.feed(AddressChanged(name, present, at))

    def both_up(self, at: float = 0.0) -> float:
        """Bring both links UP with the wired one active; returns the time reached."""
        t = at
        for _ in range(CFG.rise_after):
            t += 0.1
            self.probe("wired", True, t)
            self.probe("4g", True, t)
        assert self.policy.active == "wired"
        return t
