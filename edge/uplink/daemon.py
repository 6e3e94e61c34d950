"""The uplink daemon: probes, netlink and the 4G meter in; routes and uplink.json out.

One thread owns the policy, the routes and the announcement; everything slow runs elsewhere
and reports back through one queue: probes (a worker per link, one probe in flight each),
the netlink monitor thread, and ModemManager queries. The loop sleeps until the next thing
is due (a probe, a policy deadline, a meter sample, a status refresh) or a report arrives,
so a carrier loss is acted on within milliseconds of netlink saying so.

Probe scheduling: a link's next probe starts ``policy.probe_interval(link)`` after its last
one started (never two at once), so the rate follows the situation at once -- e.g. the idle
4G link goes from every 30 s to every second the moment the wired link misses a probe.
Probes are TCP connects; a full TLS handshake replaces one every ``tls_every_s`` and keeps
replacing them after a TLS failure until one succeeds (captive portals accept any TCP).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from edge.health.sdnotify import Notifier
from edge.uplink.announce import Announcer, boottime
from edge.uplink.budget import (
    POLICY_ALL,
    BudgetMeter,
    BudgetStore,
    Counters,
    current_boot_id,
    read_counters,
)
from edge.uplink.config import LinkConfig, Target, UplinkConfig
from edge.uplink.errors import UplinkError
from edge.uplink.modem import ModemReader
from edge.uplink.netlink import LinkFacts, Notice, Routes
from edge.uplink.policy import (
    AddressChanged,
    CarrierChanged,
    Event,
    Policy,
    ProbeResult,
    Switch,
    Tick,
)
from edge.uplink.probe import (
    TCP_PROBE_BYTES_GUESS,
    TLS_PROBE_BYTES_GUESS,
    ProbeOutcome,
    Prober,
)

__all__ = ["MONTH_S", "ProbeStats", "UplinkDaemon"]

log = logging.getLogger("edge.uplink")

MONTH_S = 30 * 86400
RECONCILE_EVERY_S = 30.0


@dataclass
class ProbeStats:
    """Measured probe cost per link, for the bytes-per-month figure."""

    count: dict[str, int] = field(default_factory=lambda: {"tcp": 0, "tls": 0})
    ok_bytes: dict[str, int] = field(default_factory=lambda: {"tcp": 0, "tls": 0})
    ok_count: dict[str, int] = field(default_factory=lambda: {"tcp": 0, "tls": 0})
    total_bytes: int = 0

    def add(self, out: ProbeOutcome) -> None:
        self.count[out.kind] += 1
        self.total_bytes += out.wire_bytes
        if out.ok:
            self.ok_bytes[out.kind] += out.wire_bytes
            self.ok_count[out.kind] += 1

    def average(self, kind: str) -> float:
        guess = TCP_PROBE_BYTES_GUESS if kind == "tcp" else TLS_PROBE_BYTES_GUESS
        n = self.ok_count[kind]
        return self.ok_bytes[kind] / n if n else float(guess)

    def per_month(self, interval_s: float, tls_every_s: float) -> int:
        probes = MONTH_S / interval_s
        tls = min(probes, MONTH_S / tls_every_s) if tls_every_s > 0 else 0.0
        return int((probes - tls) * self.average("tcp") + tls * self.average("tls"))


@dataclass(frozen=True)
class _ProbeDone:
    link: str
    outcome: ProbeOutcome


@dataclass(frozen=True)
class _ModemFacts:
    facts: dict[str, Any] | None


class UplinkDaemon:
    def __init__(self, cfg: UplinkConfig, *, routes: Routes, prober: Prober,
                 monitor_factory: Callable[[Callable[[Notice], None]], Any] | None,
                 modem: ModemReader | None = None,
                 clock: Callable[[], float] = boottime,
                 today: Callable[[], date] = date.today,
                 counters: Callable[[str], Counters | None] = read_counters,
                 boot_id: str | None = None) -> None:
        self.cfg = cfg
        self.routes = routes
        self.prober = prober
        self.modem = modem
        self.clock = clock
        self.today = today
        self.read_counters = counters
        self.events: queue.Queue[Notice | _ProbeDone | _ModemFacts] = queue.Queue()
        self.monitor = monitor_factory(self.events.put) if monitor_factory else None
        self.announcer = Announcer(cfg.run_dir)
        self.started = clock()
        self.policy = Policy(cfg.policy, cfg.links, self.started)
        self.facts: dict[str, LinkFacts] = {}
        self.route_errors: dict[str, str | None] = {}
        self.switch_seq = 0
        self.last_switch: dict[str, Any] | None = None
        self.switch_error: str | None = None
        self.stats = {link.name: ProbeStats() for link in cfg.links}
        self.modem_facts: dict[str, Any] | None = None
        self._pool = ThreadPoolExecutor(max_workers=len(cfg.links) + 1,
                                        thread_name_prefix="uplink-probe")
        self._inflight: set[str] = set()
        self._last_probe_start: dict[str, float] = {}
        self._last_tls_ok: dict[str, float] = {}
        self._tls_failing: set[str] = set()
        self._target_idx = {link.name: 0 for link in cfg.links}
        self._modem_pending = False
        self._published_key: object = None
        self._switching = True  # False for --once: report, never move the default route
        metered = [link.interface for link in cfg.links if link.metered]
        self._metered_ifs = metered
        self.store = BudgetStore(cfg.budget_file)
        self.meter = BudgetMeter(cfg.budget, metered, self.store.load(),
                                 boot_id if boot_id is not None else current_boot_id(),
                                 today(), self._sample_counters())
        self.store.save(self.meter.record())  # new boot id and counter baseline on record

    # --- helpers --------------------------------------------------------------------------
    def _sample_counters(self) -> dict[str, Counters | None]:
        return {name: self.read_counters(name) for name in self._metered_ifs}

    def _feed(self, event: Event) -> None:
        sw = self.policy.handle(event)
        if sw is not None and self._switching:
            self._apply(sw)

    def _apply(self, sw: Switch) -> None:
        link = self.cfg.link(sw.to_link)
        why = ""
        if sw.reason == "failover" and sw.from_link is not None:
            v = self.policy.view(sw.from_link)
            if v.lost_since is not None or v.carrier is False or v.address is False:
                why = "carrier or address lost"
            else:
                why = f"{v.fail_streak} probes failed, last: {v.last_error or 'timeout'}"
        elif sw.reason == "failback":
            why = f"{sw.to_link} clean for {self.cfg.policy.holddown_s:g} s"
        try:
            self.routes.set_active(link)
            self.switch_error = None
        except UplinkError as e:
            # The policy's choice stands; the next reconcile retries the route.
            self.switch_error = e.key
            log.error("cannot switch to %s: %s", link.name, e.message)
        self.switch_seq += 1
        self.last_switch = {"from": sw.from_link, "to": sw.to_link, "reason": sw.reason,
                            "why": why, "at_boottime": round(sw.at, 3)}
        log.warning("%s %s -> %s%s", sw.reason, sw.from_link or "-", sw.to_link,
                    f" ({why})" if why else "")
        self.publish(durable=True)

    def _refresh_facts(self, at: float) -> None:
        for link in self.cfg.links:
            new = self.routes.facts(link)
            old = self.facts.get(link.name)
            self.facts[link.name] = new
            if old is None or old.carrier != new.carrier:
                self._feed(CarrierChanged(link.name, new.carrier, at))
            if old is None or (old.address is None) != (new.address is None):
                self._feed(AddressChanged(link.name, new.address is not None, at))
            if old != new:
                self.route_errors[link.name] = self.routes.prepare(link, new)

    def _reconcile(self) -> None:
        for link in self.cfg.links:
            facts = self.routes.facts(link)
            self.facts[link.name] = facts
            self.route_errors[link.name] = self.routes.prepare(link, facts)
        active = self.policy.active
        if active is not None and self.routes.kernel_active() != active:
            try:
                self.routes.set_active(self.cfg.link(active))
                self.switch_error = None
            except UplinkError as e:
                self.switch_error = e.key

    # --- probes ---------------------------------------------------------------------------
    def _next_target(self, link: LinkConfig, tls: bool) -> Target:
        targets = [t for t in self.cfg.targets if t.tls] if tls else list(self.cfg.targets)
        if not targets:
            targets = list(self.cfg.targets)
        i = self._target_idx[link.name] % len(targets)
        self._target_idx[link.name] += 1
        return targets[i]

    def _tls_due(self, link: LinkConfig, now: float) -> bool:
        if link.tls_every_s <= 0 or not any(t.tls for t in self.cfg.targets):
            return False
        if link.name in self._tls_failing:
            return True
        last = self._last_tls_ok.get(link.name)
        return last is None or now - last >= link.tls_every_s

    def _probe_due_at(self, name: str) -> float:
        last = self._last_probe_start.get(name)
        return self.started if last is None else last + self.policy.probe_interval(name)

    def _start_probe(self, link: LinkConfig, now: float) -> None:
        tls = self._tls_due(link, now)
        target = self._next_target(link, tls)
        facts = self.facts.get(link.name)
        source = facts.address if facts is not None else None
        self._inflight.add(link.name)
        self._last_probe_start[link.name] = now

        def run() -> None:
            try:
                out = self.prober.probe(link.interface, source, target, tls, link.timeout_s)
            except Exception as e:  # a bug must not silence a link forever
                log.exception("probe of %s failed", link.name)
                t = self.clock()
                out = ProbeOutcome(False, "tls" if tls else "tcp", target.label, now, t, None,
                                   type(e).__name__, 0)
            self.events.put(_ProbeDone(link.name, out))

        self._pool.submit(run)

    def _probe_done(self, done: _ProbeDone) -> None:
        out = done.outcome
        self._inflight.discard(done.link)
        self.stats[done.link].add(out)
        if out.kind == "tls":
            if out.ok:
                self._last_tls_ok[done.link] = out.finished_at
                self._tls_failing.discard(done.link)
            elif out.error.startswith("tls"):
                self._tls_failing.add(done.link)
        log.debug("probe %s %s %s: %s %s", done.link, out.kind, out.target,
                  "ok" if out.ok else "FAILED", f"{out.rtt_ms:.1f} ms" if out.rtt_ms else out.error)
        self._feed(ProbeResult(done.link, out.ok, out.finished_at, started_at=out.started_at,
                               rtt_ms=out.rtt_ms, error=out.error))

    # --- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = self.clock()
        links: dict[str, Any] = {}
        for link in self.cfg.links:
            v = self.policy.view(link.name)
            f = self.facts.get(link.name) or LinkFacts.missing(link.interface)
            st = self.stats[link.name]
            links[link.name] = {
                "role": link.name,
                "interface": link.interface,
                "metered": link.metered,
                "present": f.index is not None,
                "carrier": f.carrier,
                "address": f.address,
                "gateway": self.routes.gateway(link),
                "healthy": v.healthy,
                "health": v.health,
                "confirmed": v.clean_since is not None,
                "clean_for_s": (round(now - v.clean_since, 1)
                                if v.clean_since is not None else None),
                "fail_streak": v.fail_streak,
                "last_probe_ok": v.last_probe_ok,
                "last_probe_ms": round(v.last_rtt_ms, 1) if v.last_rtt_ms is not None else None,
                "last_probe_age_s": (round(now - v.last_probe_at, 1)
                                     if v.last_probe_at is not None else None),
                "last_error": v.last_error,
                "routing_error": self.route_errors.get(link.name),
                "probe_interval_s": self.policy.probe_interval(link.name),
                "probes": dict(st.count),
                "probe_bytes": st.total_bytes,
                "probe_bytes_per_month": {
                    "standby": st.per_month(link.standby_interval_s, link.tls_every_s),
                    "active": st.per_month(link.interval_s, link.tls_every_s),
                },
            }
        doc: dict[str, Any] = {
            "version": 1,
            "active": self.policy.active,
            "state": self.policy.state,
            "switch_seq": self.switch_seq,
            "last_switch": self.last_switch,
            "switch_error": self.switch_error,
            "links": links,
            "metered_policy": self.meter.policy if self._metered_ifs else POLICY_ALL,
            "budget": self.meter.status(),
            "updated_boottime": round(now, 3),
            "daemon_started": round(self.started, 3),
            "pid": os.getpid(),
        }
        if self.modem_facts is not None:
            doc["modem"] = self.modem_facts
        return doc

    def publish(self, *, durable: bool) -> None:
        self.announcer.publish(self.status(), durable=durable)

    def _status_key(self) -> object:
        """What, when it changes, is worth an immediate (non-periodic) write."""
        return (self.policy.active, self.policy.state, self.meter.policy, tuple(
            (self.policy.view(n).health, self.facts.get(n)) for n in self.policy.link_names))

    def _heartbeat(self) -> None:
        hb = self.cfg.run_dir / "heartbeat" / "uplink"
        with contextlib.suppress(OSError):
            hb.parent.mkdir(parents=True, exist_ok=True)
            hb.touch()

    # --- budget and modem -----------------------------------------------------------------
    def _sample_budget(self) -> None:
        before = self.meter.policy
        if self.meter.observe(self._sample_counters(), self.today()):
            self.store.save(self.meter.record())
        if self.meter.policy != before:
            log.warning("4G budget %s of %s used: metered policy %s -> %s",
                        self.meter.used, self.cfg.budget.hard_cap_bytes, before,
                        self.meter.policy)
            self.publish(durable=True)

    def _start_modem_read(self) -> None:
        if self.modem is None or self._modem_pending:
            return
        self._modem_pending = True
        modem = self.modem

        def run() -> None:
            facts = None
            with contextlib.suppress(Exception):
                facts = modem.read()
            self.events.put(_ModemFacts(facts))

        self._pool.submit(run)

    # --- entry points ---------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        now = self.clock()
        self._refresh_facts(now)
        self._feed(Tick(now))
        if self.monitor is not None:
            self.monitor.start()
        self.publish(durable=True)
        notifier = Notifier()  # Type=notify: ready after the first decision, then watchdog
        notifier.ready(status="probing links")
        next_status = now + self.cfg.status_interval_s
        next_budget = now + self.cfg.budget.sample_interval_s
        next_modem = now
        next_reconcile = now + RECONCILE_EVERY_S
        try:
            while not stop.is_set():
                now = self.clock()
                for link in self.cfg.links:
                    if link.name not in self._inflight and now >= self._probe_due_at(link.name):
                        self._start_probe(link, now)
                wake = [next_status, next_budget, next_reconcile, now + 1.0]
                if self.modem is not None:
                    wake.append(next_modem)
                deadline = self.policy.next_deadline()
                if deadline is not None:
                    wake.append(deadline)
                wake += [self._probe_due_at(link.name) for link in self.cfg.links
                         if link.name not in self._inflight]
                try:
                    item = self.events.get(timeout=max(0.0, min(wake) - now))
                except queue.Empty:
                    item = None
                while item is not None:
                    self._handle(item)
                    try:
                        item = self.events.get_nowait()
                    except queue.Empty:
                        item = None
                now = self.clock()
                self._feed(Tick(now))
                notifier.ping()
                if now >= next_budget:
                    self._sample_budget()
                    next_budget = now + self.cfg.budget.sample_interval_s
                if now >= next_reconcile:
                    self._reconcile()
                    next_reconcile = now + RECONCILE_EVERY_S
                if self.modem is not None and now >= next_modem:
                    self._start_modem_read()
                    next_modem = now + self.cfg.modem_interval_s
                key = self._status_key()
                if now >= next_status or key != self._published_key:
                    self._published_key = key
                    self.publish(durable=False)
                    self._heartbeat()
                    next_status = now + self.cfg.status_interval_s
        finally:
            self.shutdown()

    def _handle(self, item: Notice | _ProbeDone | _ModemFacts) -> None:
        if isinstance(item, _ProbeDone):
            self._probe_done(item)
        elif isinstance(item, Notice):
            if item.kind == "route":
                # One of ours deleted (admin-down, ifdown), or DHCP/pppd changed a default
                # route we may learn a gateway from. (Our own additions are not reported,
                # or every reconcile would trigger the next.)
                if item.deleted or not item.ours:
                    self._reconcile()
            else:
                self._refresh_facts(item.at)
        else:
            self._modem_pending = False
            self.modem_facts = item.facts

    def shutdown(self) -> None:
        """Stop threads and write the exact budget; routes stay (traffic keeps flowing)."""
        if self.monitor is not None:
            with contextlib.suppress(Exception):
                self.monitor.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(OSError):
            self.meter.observe(self._sample_counters(), self.today())
            self.store.save(self.meter.record(exact=True))
        self.routes.close()

    def run_once(self) -> dict[str, Any]:
        """Probe every link once (TLS where possible), write uplink.json and return it.
        Routing for probes is set up; the main default route is not touched."""
        self._switching = False
        now = self.clock()
        for link in self.cfg.links:
            facts = self.routes.facts(link)
            self.facts[link.name] = facts
            self.route_errors[link.name] = self.routes.prepare(link, facts)
            self._feed(CarrierChanged(link.name, facts.carrier, now))
            self._feed(AddressChanged(link.name, facts.address is not None, now))
        futures = []
        for link in self.cfg.links:
            tls = self._tls_due(link, now)
            target = self._next_target(link, tls)
            facts = self.facts[link.name]
            futures.append((link, self._pool.submit(
                self.prober.probe, link.interface, facts.address, target, tls,
                link.timeout_s)))
        for link, fut in futures:
            self._probe_done(_ProbeDone(link.name, fut.result()))
        if self.modem is not None:
            with contextlib.suppress(Exception):
                self.modem_facts = self.modem.read()
        if self.meter.observe(self._sample_counters(), self.today()):
            self.store.save(self.meter.record(exact=True))
        doc = self.status()
        # No policy has run: report which link the kernel uses now.
        doc["active"] = self.routes.kernel_active()
        doc["state"] = "once"
        self.announcer.publish(doc, durable=True)
        self._pool.shutdown(wait=True)
        self.routes.close()
        return doc

