#!/usr/bin/env python3
"""Uplink failover benchmark: time from a fault on the wired link to restored connectivity
and to the first custody receipt over 4G, goodput of the custody chain over a shaped 4G link,
and what the probes cost per month.

Run as root from the repository (builds its own network namespaces, tests/netns/topology.py):

    .venv/bin/python bench/uplink_failover.py [--cuts 10] [--baseline-cuts 3]

and it writes bench/results/uplink.md (with this command line).

What is measured, each cut on a running ``edge uplink`` with the production thresholds
(probe 1 s, timeout 1 s, 3 misses, carrier grace 1.5 s; hold-down cut to 5 s only so the
next cut can start sooner):
  * switch: fault -> the daemon's switch (uplink.json ``last_switch``);
  * restored: fault -> the first new TCP connection to the central site carried over 4G by
    a long-lived client that, like the forwarder, drops its connection when uplink.json
    announces a switch (tests/netns/flow_client.py).
Baselines in the same run: the same daemon probing like a typical slow monitor (every 5 s,
2 s timeout, 3 misses, carrier events ignored), and the kernel alone (two DHCP-style default
routes, no daemon).

With the real chain (tests/netns/chain_harness.py: broker with the repo config and
``edge-central receive`` in the central namespace; ``edge intake``, ``edge forward``,
``edge uplink`` in the device namespace; production forwarder and custody settings):
  * receipt: fault -> the first custody receipt at the office for a recording uploaded
    after the fault (a workstation stores a small recording every 100 ms), so it cannot have
    gone over wired; 4G shaped to ``--rate`` with tbf;
  * goodput over 4G shaped to ``--rate`` with tbf on the device's egress (and the ISP's, for
    the way back), wired down: sealed bytes receipted per second, against the configured rate
    and against raw TCP through the same shaper in the same run (one bulk TCP stream to a
    sink in the central namespace).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.custody.sender import SenderConfig  # noqa: E402
from edge.forward.reconnect import ReconnectPolicy  # noqa: E402
from tests.netns.chain_harness import DEVICE_ID, ChainSite, Upload, build_site  # noqa: E402
from tests.netns.topology import DEV_ADDR, SINK, SINK_PORT, Topology, topology  # noqa: E402
from tests.netns.uplink_harness import Uplink, boottime, merge  # noqa: E402

MONTH_S = 30 * 86400

# Production thresholds (edge/uplink/config.py defaults), hold-down shortened for the bench.
PRODUCTION: dict[str, Any] = {
    "holddown_s": 5.0, "status_interval_s": 0.5,
    "wired": {"interface": "eth0"},
    "4g": {"interface": "wwan0"},
}
# The forwarder as shipped: reconnect, keepalive and custody timers at their defaults
# (tests/e2e/chain.py shortens them for tests; the bench puts them back).
_R, _S = ReconnectPolicy(), SenderConfig()
PROD_FORWARD: dict[str, Any] = {"telemetry_interval_s": 60.0, "reconnect_quick_s": _R.quick_s,
                                "reconnect_base_s": _R.base_s, "reconnect_max_s": _R.max_s}
PROD_MQTT: dict[str, Any] = {"keepalive_s": 20, "connect_timeout_s": 8.0}
PROD_CUSTODY: dict[str, Any] = {"offer_timeout_s": _S.offer_timeout_s,
                                "progress_timeout_s": _S.progress_timeout_s,
                                "receipt_timeout_s": _S.receipt_timeout_s,
                                "backoff_max_s": _S.backoff_max_s}
SLOW_MONITOR: dict[str, Any] = merge(PRODUCTION, {
    "carrier_grace_s": 600.0,  # carrier events ignored: only probes count
    "wired": {"interval_s": 5.0, "standby_interval_s": 5.0, "urgent_interval_s": 5.0,
              "timeout_s": 2.0},
    "4g": {"interval_s": 5.0, "standby_interval_s": 5.0, "urgent_interval_s": 5.0,
           "timeout_s": 2.0},
})


class Detector(Protocol):
    def start(self, topo: Topology, run_dir: Path) -> None: ...
    def ready(self) -> bool: ...
    def restored_after(self, t0: float, link: str) -> float | None: ...


@dataclass
class FlowReconnect:
    """Restored = a new TCP connection to the central site made over ``link`` after t0."""

    log: Path | None = None

    def start(self, topo: Topology, run_dir: Path) -> None:
        topo.start_sink()
        self.log = topo.start_flow(run_dir)

    def _events(self) -> list[dict[str, Any]]:
        if self.log is None or not self.log.exists():
            return []
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]

    def ready(self) -> bool:
        ev = [e for e in self._events() if e["event"] in ("connected", "dropped")]
        return bool(ev) and ev[-1]["event"] == "connected" and ev[-1]["src"] == DEV_ADDR["wired"]

    def restored_after(self, t0: float, link: str) -> float | None:
        for e in self._events():
            if e["event"] == "connected" and e["t"] >= t0 and e["src"] == DEV_ADDR[link]:
                return float(e["t"])
        return None


DETECTORS: dict[str, Callable[[], Detector]] = {"flow": FlowReconnect}


@dataclass
class Cut:
    kind: str
    switch_s: float | None
    restored_s: float | None


@dataclass
class Series:
    name: str
    cuts: list[Cut] = field(default_factory=list)

    def values(self, kind: str, what: str) -> list[float]:
        return [getattr(c, what) for c in self.cuts if c.kind == kind
                and getattr(c, what) is not None]

    def summary(self, kind: str, what: str) -> str:
        v = self.values(kind, what)
        n = len([c for c in self.cuts if c.kind == kind])
        if not v:
            return f"never (0/{n})"
        extra = "" if len(v) == n else f", {n - len(v)} never"
        return f"{statistics.median(v):.2f} / {max(v):.2f}{extra}"


def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def fault(topo: Topology, kind: str, on: bool) -> None:
    if kind == "carrier":
        topo.carrier("wired", not on)
    else:
        topo.blackhole("wired", on)


def switch_after(up: Uplink, t0: float, wait: float = 3.0) -> float | None:
    """Seconds from ``t0`` (boottime) to the daemon's switch to 4G. The daemon moves the
    route a few ms before it announces the switch, and a client whose connection timed out
    on its own can reconnect over 4G in between: wait a little for the announcement."""
    def last() -> dict[str, Any]:
        doc: dict[str, Any] = up.status().get("last_switch") or {}
        return doc if doc.get("to") == "4g" and doc.get("at_boottime", 0) >= t0 else {}
    wait_until(lambda: bool(last()), wait)
    doc = last()
    return float(doc["at_boottime"]) - t0 if doc else None


def run_cuts(topo: Topology, up: Uplink | None, det: Detector, kinds: list[str], n: int,
             window: float, holddown: float) -> list[Cut]:
    cuts = []
    for kind in kinds:
        for i in range(n):
            if up is not None:
                up.wait_active("wired", holddown + 30)
            if not wait_until(det.ready, 20):
                raise RuntimeError("the flow did not come back on wired")
            time.sleep(random.uniform(0.5, 1.5))  # any phase relative to the probes
            t0 = boottime()
            fault(topo, kind, True)
            wait_until(lambda: det.restored_after(t0, "4g") is not None, window)  # noqa: B023
            restored = det.restored_after(t0, "4g")
            switch = None if up is None else switch_after(up, t0)
            fault(topo, kind, False)
            cut = Cut(kind, switch, None if restored is None else restored - t0)
            cuts.append(cut)
            print(f"  {kind} #{i + 1}: switch {cut.switch_s}, restored {cut.restored_s}",
                  flush=True)
            if up is None:
                # kernel alone: wait for the flow to recover on wired by itself
                wait_until(det.ready, 20)
    return cuts


def measure_probe_bytes(workdir: Path) -> dict[str, float]:
    """Bytes per probe on the 4G link, from the interface counters and from TCP_INFO."""
    out: dict[str, float] = {}
    for kind, tls_every in (("tcp", 0.0), ("tls", 0.001)):
        with topology(workdir / f"probe-{kind}") as topo:
            topo.start_broker()
            up = Uplink(topo, merge(PRODUCTION, {
                "tls_every_s": tls_every,
                "4g": {"standby_interval_s": 0.5, "urgent_interval_s": 0.5}})).start()
            up.wait_active("wired", 15)
            time.sleep(2.0)
            s0, c0 = up.status()["links"]["4g"], topo.counters("4g")
            time.sleep(15.0)
            s1, c1 = up.status()["links"]["4g"], topo.counters("4g")
            probes = sum(s1["probes"].values()) - sum(s0["probes"].values())
            wire = (c1[0] - c0[0]) + (c1[1] - c0[1])
            out[f"{kind}_counted"] = wire / probes
            out[f"{kind}_estimated"] = (s1["probe_bytes"] - s0["probe_bytes"]) / probes
            out[f"{kind}_probes"] = probes
            up.stop()
    return out


def monthly(per_probe: dict[str, float], interval_s: float, tls_every_s: float) -> float:
    probes = MONTH_S / interval_s
    tls = min(probes, MONTH_S / tls_every_s)
    return (probes - tls) * per_probe["tcp_counted"] + tls * per_probe["tls_counted"]


# --- the real chain ------------------------------------------------------------------------
def chain_site(topo: Topology, workdir: Path) -> ChainSite:
    site = build_site(topo, workdir, PRODUCTION, forward=PROD_FORWARD, mqtt=PROD_MQTT,
                      custody=PROD_CUSTODY)
    site.start_forwarder()
    return site


def spool_query(site: ChainSite, sql: str, *args: object) -> Any:
    conn = sqlite3.connect(f"file:{site.office.config.spool.dir / 'spool.db'}?mode=ro",
                           uri=True, timeout=5)
    try:
        return conn.execute(sql, args).fetchone()
    finally:
        conn.close()


def first_receipt_after(site: ChainSite, t_wall: float) -> float | None:
    """Wall time of the first receipt for a recording stored at or after ``t_wall``."""
    row = spool_query(site, "SELECT MIN(receipted_at) FROM recordings WHERE stored_at >= ? "
                      "AND receipted_at IS NOT NULL", t_wall)
    return None if row[0] is None else float(row[0])


class Workstation:
    """Uploads a small recording every ``period_s`` from inside the device namespace."""

    def __init__(self, site: ChainSite, size: int = 10_000, period_s: float = 0.1) -> None:
        self.site, self.size, self.period_s = site, size, period_s
        self.stop = threading.Event()
        self.codes: dict[int, int] = {}
        self.thread = threading.Thread(target=self._thread, daemon=True)

    def start(self) -> Workstation:
        self.thread.start()
        return self

    def _thread(self) -> None:
        self.site.topo.call(self.site.topo.dev, self._run, timeout=None)

    def _run(self) -> None:
        office, i = self.site.office, 0
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set():
                t = time.monotonic()
                r = c.put(f"{office.url}/v1/recordings/ws-{i:06d}",
                          content=random.randbytes(self.size), headers=office.auth)
                self.codes[r.status_code] = self.codes.get(r.status_code, 0) + 1
                i += 1
                self.stop.wait(max(0.0, self.period_s - (time.monotonic() - t)))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=35)


@dataclass
class ReceiptCut:
    kind: str
    switch_s: float | None
    receipt_s: float | None
    reconnect_s: float | None  # fault -> the broker saw the forwarder connect from 4G


def run_receipt_cuts(workdir: Path, n: int, rate: str) -> tuple[list[ReceiptCut], str]:
    cuts: list[ReceiptCut] = []
    # a fresh central store and spool: recordings from an earlier run carry that run's ids
    # and receipt key
    shutil.rmtree(workdir / "receipt", ignore_errors=True)
    with topology(workdir / "receipt") as topo:
        topo.shape("4g", rate)
        site = chain_site(topo, workdir / "receipt" / "site")
        ws = Workstation(site).start()
        try:
            for kind in ("carrier", "blackhole"):
                for i in range(n):
                    site.uplink.wait_active("wired", 60)
                    ok = wait_until(lambda: site.broker.device_connects(DEVICE_ID)[-1:] ==
                                    [DEV_ADDR["wired"]], 60)
                    mark = time.time()
                    ok = ok and wait_until(
                        lambda: first_receipt_after(site, mark) is not None, 60)  # noqa: B023
                    if not ok:
                        raise RuntimeError(f"the chain did not settle on wired\n{site.logs()}")
                    time.sleep(random.uniform(0.5, 1.5))  # any phase relative to the probes
                    connects = len(site.broker.device_connects(DEVICE_ID))
                    t0, t0b = time.time(), boottime()
                    fault(topo, kind, True)
                    got = reconnect = None
                    deadline = time.monotonic() + 60
                    while got is None and time.monotonic() < deadline:
                        if reconnect is None and DEV_ADDR["4g"] in \
                                site.broker.device_connects(DEVICE_ID)[connects:]:
                            reconnect = time.time() - t0
                        got = first_receipt_after(site, t0)
                        time.sleep(0.02)
                    switch = switch_after(site.uplink, t0b)
                    fault(topo, kind, False)
                    cut = ReceiptCut(kind, switch, None if got is None else got - t0,
                                     reconnect)
                    cuts.append(cut)
                    print(f"  {kind} #{i + 1}: switch {cut.switch_s}, forwarder on 4G "
                          f"{cut.reconnect_s}, first receipt {cut.receipt_s}", flush=True)
        finally:
            ws.close()
            site.close()
        uploads = ", ".join(f"{code}: {k}" for code, k in sorted(ws.codes.items()))
    return cuts, uploads


def raw_tcp_seconds(topo: Topology, nbytes: int) -> float:
    """One bulk TCP stream from the device to the central sink, until the sink has it all."""
    def send() -> float:
        with socket.create_connection((SINK, SINK_PORT), timeout=60) as s:
            block = b"\0" * 65536
            t = time.monotonic()
            left = nbytes
            while left > 0:
                left -= s.send(block[:left])
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):  # the sink closes once it has read everything
                pass
            return time.monotonic() - t
    return topo.call(topo.dev, send)


def chain_seconds(site: ChainSite, tag: str, sizes: list[int]) -> tuple[int, float]:
    """Upload, then wait for every receipt: (sealed bytes, first claim -> last receipt)."""
    items = [Upload(f"{tag}-{i}", size) for i, size in enumerate(sizes)]
    codes = site.upload(items)
    if set(codes.values()) != {201}:
        raise RuntimeError(f"uploads refused: {codes}")
    ids = {u.recording_id for u in items}

    def done() -> bool:
        rows = site.rows()
        return all(rows[rid]["state"] == "purged" for rid in ids)

    if not wait_until(done, 600):
        raise RuntimeError(f"not all receipted\n{site.logs()}")
    rows = [r for rid, r in site.rows().items() if rid in ids]
    span = max(r["receipted_at"] for r in rows) - min(r["sending_at"] for r in rows)
    return sum(r["sealed_size"] for r in rows), span


def measure_goodput(workdir: Path, rate: str, mbytes: float, rounds: int) -> dict[str, Any]:
    rate_bps = parse_rate(rate)
    out: dict[str, Any] = {"rate": rate, "rate_bps": rate_bps, "raw": [], "chain": []}
    shutil.rmtree(workdir / "goodput", ignore_errors=True)
    with topology(workdir / "goodput") as topo:
        topo.shape("4g", rate)
        topo.carrier("wired", False)  # everything goes over 4G
        site = chain_site(topo, workdir / "goodput" / "site")
        try:
            site.uplink.wait_active("4g", 60)
            if not wait_until(lambda: site.broker.device_connects(DEVICE_ID)[-1:] ==
                              [DEV_ADDR["4g"]], 60):
                raise RuntimeError(f"the forwarder did not connect over 4G\n{site.logs()}")
            topo.start_sink()
            nbytes = int(mbytes * 1e6)
            per = 2 * 1024 * 1024  # recordings of 2 MiB, the last one smaller
            sizes = [per] * (nbytes // per) + ([nbytes % per] if nbytes % per else [])
            for r in range(rounds):
                t = raw_tcp_seconds(topo, nbytes)
                out["raw"].append(nbytes * 8 / t)
                sealed, span = chain_seconds(site, f"g{r}", sizes)
                out["chain"].append(sealed * 8 / span)
                print(f"  round {r + 1}: raw TCP {nbytes * 8 / t / 1e6:.3f} Mbit/s, chain "
                      f"{sealed * 8 / span / 1e6:.3f} Mbit/s ({sealed} sealed bytes in "
                      f"{span:.1f} s)", flush=True)
            out["budget_used"] = site.uplink.status().get("budget", {}).get("used_bytes")
        finally:
            site.close()
    return out


def parse_rate(rate: str) -> float:
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    for unit, mult in units.items():
        if rate.endswith(unit):
            return float(rate[:-len(unit)]) * mult
    raise ValueError(f"rate {rate!r}: use e.g. 4mbit")


def med_worst(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return f"never (0/{len(values)})"
    extra = "" if len(v) == len(values) else f", {len(values) - len(v)} never"
    return f"{statistics.median(v):.2f} / {max(v):.2f}{extra}"


SECTIONS = ("flow", "receipt", "goodput", "probes")


def flow_section(args: argparse.Namespace) -> list[str]:
    kinds = ["carrier", "blackhole"]
    series: list[Series] = []
    for name, cfg, n, window in (("edge uplink (production thresholds)", PRODUCTION,
                                  args.cuts, 30.0),
                                 ("slow monitor (5 s probes, 2 s timeout, 3 misses, no "
                                  "carrier events)", SLOW_MONITOR, args.baseline_cuts, 60.0),
                                 ("kernel alone (DHCP-style routes, no daemon)", None, 1, 20.0)):
        print(name, flush=True)
        with topology(args.workdir / f"s{len(series)}") as topo:
            topo.start_broker()
            up = None
            if cfg is not None:
                up = Uplink(topo, cfg).start()
                up.wait_active("wired", 15)
            det = DETECTORS[args.detector]()
            det.start(topo, topo.workdir / "state" / "run")
            s = Series(name, run_cuts(topo, up, det, kinds, n, window,
                                      float((cfg or {}).get("holddown_s", 0.0))))
            series.append(s)
            if up is not None:
                up.stop()
    lines = [
        "## Fault to restored connectivity",
        "",
        f"Detector: {args.detector} (first new TCP connection over 4G by a client that drops "
        "its connection on the uplink.json switch notice, as the forwarder does). Seconds "
        "from the fault to the switch and to restored connectivity over 4G, median / worst:",
        "",
        "| monitor | cuts | carrier: switch | carrier: restored | blackhole: switch | "
        "blackhole: restored |",
        "|---|---|---|---|---|---|",
    ]
    for s in series:
        n = len(s.cuts) // 2
        lines.append(f"| {s.name} | {n} + {n} | {s.summary('carrier', 'switch_s')} | "
                     f"{s.summary('carrier', 'restored_s')} | "
                     f"{s.summary('blackhole', 'switch_s')} | "
                     f"{s.summary('blackhole', 'restored_s')} |")
    ours, slow = series[0], series[1]
    lines += ["", "Ratio of medians, restored (slow monitor / edge uplink): "]
    for kind in kinds:
        a, b = ours.values(kind, "restored_s"), slow.values(kind, "restored_s")
        if a and b:
            lines[-1] += f"{kind} {statistics.median(b) / statistics.median(a):.1f}x; "
    return [*lines, ""]


def receipt_section(args: argparse.Namespace) -> list[str]:
    print(f"fault -> first receipt over 4G ({args.rate})", flush=True)
    cuts, uploads = run_receipt_cuts(args.workdir, args.cuts, args.rate)
    lines = [
        "## Fault to the first custody receipt over 4G (the real chain)",
        "",
        "Broker with the repo config and `edge-central receive` in the central namespace; "
        "`edge intake`, `edge forward` and `edge uplink` in the device namespace, with the "
        "production forwarder settings (keepalive 20 s, reconnect, custody timers) and the "
        "uplink thresholds above. A workstation uploads a 10 kB recording every 100 ms; "
        "*first receipt* is the first custody receipt the office holds for a recording "
        f"stored after the fault (it cannot have gone over wired). 4G shaped to {args.rate} "
        "with tbf. Seconds, median / worst:",
        "",
        "| cut | cuts | switch | forwarder connected over 4G | first receipt |",
        "|---|---|---|---|---|",
    ]
    for kind in ("carrier", "blackhole"):
        mine = [c for c in cuts if c.kind == kind]
        lines.append(f"| {kind} | {len(mine)} | {med_worst([c.switch_s for c in mine])} | "
                     f"{med_worst([c.reconnect_s for c in mine])} | "
                     f"{med_worst([c.receipt_s for c in mine])} |")
    lines += ["", f"Uploads during the cuts (HTTP status: count): {uploads}.", ""]
    return lines


def goodput_section(args: argparse.Namespace) -> list[str]:
    print(f"goodput over 4G shaped to {args.rate}", flush=True)
    g = measure_goodput(args.workdir, args.rate, args.goodput_mb, args.goodput_rounds)
    rate = g["rate_bps"]
    raw, chain = statistics.median(g["raw"]), statistics.median(g["chain"])
    rows = [f"| {i + 1} | {r / 1e6:.3f} | {r / rate:.3f} | {c / 1e6:.3f} | {c / rate:.3f} | "
            f"{c / r:.3f} |" for i, (r, c) in enumerate(zip(g["raw"], g["chain"],
                                                            strict=True))]
    return [
        "## Goodput over the shaped 4G link",
        "",
        f"4G shaped to {args.rate} with `tc tbf` (rate {args.rate}, burst 32kbit, latency "
        "50ms) on the device's egress (uploads) and the ISP's (the way back); wired down, so "
        f"everything goes over 4G. Each round: raw TCP, one bulk stream of "
        f"{args.goodput_mb:g} MB from the device to a sink in the central namespace (the "
        "baseline, through the same shaper); then the chain, "
        f"{args.goodput_mb:g} MB of recordings (2 MiB each) through intake, forwarder, "
        "broker and receiver: sealed bytes receipted / (first claim → last receipt at the "
        "office). Mbit/s, and ratios:",
        "",
        "| round | raw TCP | raw / rate | chain | **chain / rate** | chain / raw TCP |",
        "|---|---|---|---|---|---|",
        *rows,
        f"| median | {raw / 1e6:.3f} | {raw / rate:.3f} | {chain / 1e6:.3f} | "
        f"**{chain / rate:.3f}** | {chain / raw:.3f} |",
        "",
        "The shaper counts whole Ethernet frames: a full TCP segment carries 1448 payload "
        "bytes in a 1514-byte frame (95.6 %), so no TCP transfer can exceed ~0.956 of the "
        "rate here (on a real 4G bearer, which has no Ethernet header, 1448/1500 = 96.5 %).",
        "",
    ]


def probes_section(args: argparse.Namespace) -> list[str]:
    print("probe bytes", flush=True)
    per_probe = measure_probe_bytes(args.workdir)
    g_standby = monthly(per_probe, 30.0, 1800.0)
    g_active = monthly(per_probe, 5.0, 1800.0)
    w_standby = monthly(per_probe, 1.0, 300.0)
    return [
        "## Probe bytes per month",
        "",
        "Probe cost (measured on the 4G veth: interface counters include the 14-byte "
        "Ethernet header of each frame; the daemon's own estimate from TCP_INFO is IP level):",
        "",
        "| probe | bytes (counters) | bytes (daemon's TCP_INFO estimate) | probes measured |",
        "|---|---|---|---|",
        f"| TCP connect + RST | {per_probe['tcp_counted']:.0f} | "
        f"{per_probe['tcp_estimated']:.0f} | {per_probe['tcp_probes']:.0f} |",
        f"| TLS handshake (P-256 chain, TLS 1.3) | {per_probe['tls_counted']:.0f} | "
        f"{per_probe['tls_estimated']:.0f} | {per_probe['tls_probes']:.0f} |",
        "",
        "Per month (30 days) with the default schedule (counters' bytes):",
        "",
        f"- 4G idle standby (TCP every 30 s, TLS every 1800 s): "
        f"**{g_standby / 1e6:.1f} MB/month**",
        f"- 4G while it carries traffic (every 5 s, TLS every 1800 s): "
        f"{g_active / 1e6:.1f} MB/month",
        f"- wired (every 1 s, TLS every 300 s; unmetered): {w_standby / 1e6:.1f} MB/month",
        "",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cuts", type=int, default=10)
    ap.add_argument("--baseline-cuts", type=int, default=3)
    ap.add_argument("--detector", choices=sorted(DETECTORS), default="flow")
    ap.add_argument("--rate", default="4mbit", help="tbf rate of the 4G link (receipt, "
                    "goodput)")
    ap.add_argument("--goodput-mb", type=float, default=12.0)
    ap.add_argument("--goodput-rounds", type=int, default=3)
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/edge-bench-uplink"))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "uplink.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: network namespaces are needed", file=sys.stderr)
        return 2
    wanted = [x for x in args.sections.split(",") if x]
    if set(wanted) - set(SECTIONS):
        ap.error(f"--sections: unknown {sorted(set(wanted) - set(SECTIONS))}")
    builders = {"flow": flow_section, "receipt": receipt_section,
                "goodput": goodput_section, "probes": probes_section}
    lines = [
        "# Uplink failover (bench/uplink_failover.py)",
        "",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`  ",
        f"Run: {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}, kernel "
        f"{platform.release()}, {os.cpu_count()} cores. Network namespaces and veth "
        "(tests/netns/topology.py, tests/netns/chain_harness.py).",
        "",
        "Thresholds: probe interval 1 s (wired), timeout 1 s, fail_after 3, rise_after 2, "
        "carrier_grace_s 1.5, 4G urgent interval 1 s; hold-down 5 s here (60 s default) "
        "only to shorten the run. The carrier cut is `ip link set down` on the ISP side "
        "(the device sees NO-CARRIER); the blackhole cut is a blackhole default route in "
        "the ISP namespace (carrier stays up).",
        "",
    ]
    for name in SECTIONS:
        if name in wanted:
            lines += builders[name](args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
