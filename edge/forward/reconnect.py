"""When to try the central broker again: a pure policy, no I/O.

Theory of operation
-------------------
Two kinds of failure are told apart because they call for opposite behaviour:

* **network** — the office's own link is down (no route, connect or TLS handshake timed
  out). Nothing reaches the central site, so retrying often costs the fleet nothing, and the
  office wants to be back *within about two seconds* of its link returning. Retry every
  ``quick_s`` with ±50 % jitter.
* **broker** — the central side answered and refused (connection refused or reset by the
  broker's host, CONNACK error, TLS rejected). Every retry now lands on the central site;
  when it comes back after an outage, 7,000 offices must not reconnect in the same second.
  Exponential backoff with *full jitter* (delay uniform in [0, min(cap, base·2ⁿ)]).

A connection that stayed up for ``stable_s`` resets the backoff. An announced uplink switch
(``link_changed``) makes the next attempt immediate (plus a little jitter): the uplink
daemon's probes just proved the new path reaches the broker. The connection (or attempt)
that was under way on the old link then ends; ``superseded`` keeps the switch's attempt,
where ``failed`` would push it out by a network-failure delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Failure", "ReconnectPolicy", "Reconnector"]


class Failure(StrEnum):
    NETWORK = "network"
    BROKER = "broker"


@dataclass(frozen=True)
class ReconnectPolicy:
    quick_s: float = 1.0        # retry period while the office link itself is down
    base_s: float = 1.0         # first broker-refusal backoff ceiling
    max_s: float = 120.0        # broker-refusal backoff cap
    stable_s: float = 60.0      # a connection this long resets the backoff
    switch_jitter_s: float = 0.5


@dataclass
class Reconnector:
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    rng: random.Random = field(default_factory=random.Random)
    broker_failures: int = 0
    next_attempt: float = 0.0       # monotonic time of the next connect attempt
    connected_since: float | None = None

    def failed(self, kind: Failure, now: float) -> float:
        """A connect attempt (or a live connection) failed; returns the delay chosen."""
        p = self.policy
        self.connected_since = None
        if kind is Failure.NETWORK:
            delay = p.quick_s * self.rng.uniform(0.5, 1.5)
        else:
            self.broker_failures += 1
            ceiling = min(p.max_s, p.base_s * 2 ** min(self.broker_failures, 30))
            delay = self.rng.uniform(0.0, ceiling)
        self.next_attempt = now + delay
        return delay

    def connected(self, now: float) -> None:
        self.connected_since = now

    def disconnected(self, kind: Failure, now: float) -> float:
        """A live connection ended. A long one proves the broker fine: start over quickly."""
        if self.connected_since is not None and now - self.connected_since >= \
                self.policy.stable_s:
            self.broker_failures = 0
        return self.failed(kind, now)

    def superseded(self, now: float) -> float:
        """The connection or attempt begun before the last ``link_changed`` has ended: it
        says nothing about the new link, so the attempt the switch scheduled stands."""
        self.connected_since = None
        return max(0.0, self.next_attempt - now)

    def link_changed(self, now: float) -> None:
        self.broker_failures = 0
        self.next_attempt = now + self.rng.uniform(0.0, self.policy.switch_jitter_s)

    def due(self, now: float) -> bool:
        return now >= self.next_attempt
