"""The whole custody chain across the namespace topology (topology.py), as real processes:

    central ns   Mosquitto with the repo's config (edge.broker.local, bound to 203.0.113.10,
                 which its server certificate names) + ``edge-central receive``
    dev ns       ``edge intake`` (on the device's loopback), ``edge forward``, ``edge uplink``
                 sharing one edge.toml and state directory, as on an appliance

Workstation uploads run in a thread of the test process that entered the device namespace
(``Topology.call``). Helpers for tests/netns/test_chain_netns.py and bench/uplink_failover.py.
"""

from __future__ import annotations

import random
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.chain import (
    Central,
    all_purged,
    check_removals_have_valid_receipts,
    make_central,
    make_chain_office,
    spool_rows,
)
from tests.netns.topology import BROKER, Topology
from tests.netns.uplink_harness import Uplink
from tests.support.broker import Broker
from tests.support.office import Office

BROKER_PORT = 8883
SERVICE_PORT = 8884   # central services' listener (the receiver in the central namespace)
DEVICE_ID = "kec-netns-01"


class NetnsBroker(Broker):
    """The repo-config broker inside the central namespace, at the central address."""

    def __init__(self, workdir: Path, topo: Topology, **kwargs: Any) -> None:
        self.topo = topo
        super().__init__(workdir, host=BROKER, port=BROKER_PORT, service_port=SERVICE_PORT,
                         **kwargs)

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.topo.central, *super().command()]

    def accepting(self) -> bool:
        return self.topo.call(self.topo.central, super().accepting)

    def device_connects(self, device_id: str) -> list[str]:
        """Source address of each connection the device made, in order (broker log)."""
        pat = re.compile(r"New client connected from ([0-9.]+):\d+ as " + re.escape(device_id)
                         + r" ")
        return pat.findall(self.log())


def uplink_tables(uplink: dict[str, Any], ca: Path) -> dict[str, dict[str, Any]]:
    """An ``[uplink]`` dict in uplink_harness form (sub-tables as dicts) as config tables,
    probing the central broker itself with the fleet CA and the device certificate."""
    top: dict[str, Any] = {"targets": [f"{BROKER}:{BROKER_PORT}"], "tls_ca": str(ca),
                           "modem": "off"}
    out: dict[str, dict[str, Any]] = {"uplink": top}
    for k, v in uplink.items():
        if isinstance(v, dict):
            out[f"uplink.{k}"] = dict(v)
        else:
            top[k] = v
    return out


def body_for(rid: str, size: int) -> bytes:
    return random.Random(rid).randbytes(size)


@dataclass
class Upload:
    recording_id: str
    size: int
    priority: str = "bulk"


@dataclass
class ChainSite:
    topo: Topology
    root: Path
    broker: NetnsBroker
    central: Central
    office: Office
    uplink: Uplink
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # --- device programs ------------------------------------------------------------------
    def _edge(self, program: str) -> subprocess.Popen[bytes]:
        log = (self.office.root / f"{program}.log").open("ab")
        p = self.topo.python(self.topo.dev, "-m", "edge", "--config",
                             str(self.office.config_path), program, stdout=log,
                             stderr=subprocess.STDOUT)
        self.procs[program] = p
        return p

    def start_intake(self, timeout: float = 20.0) -> None:
        p = self._edge("intake")
        url = f"{self.office.url}/openapi.json"

        def ready() -> bool:
            try:
                return httpx.get(url, timeout=0.5).status_code == 200
            except httpx.TransportError:
                return False

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise RuntimeError(f"intake exited: {self.log('intake')}")
            if self.topo.call(self.topo.dev, ready):
                return
            time.sleep(0.05)
        raise RuntimeError(f"intake did not start: {self.log('intake')}")

    def start_forwarder(self) -> subprocess.Popen[bytes]:
        return self._edge("forward")

    def stop_forwarder(self) -> str:
        """SIGTERM the forwarder; returns its log."""
        p = self.procs.pop("forward")
        p.terminate()
        p.wait(timeout=20)
        return self.log("forward")

    def log(self, program: str) -> str:
        path = self.office.root / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        """Tails of every log, for assertion messages."""
        return "\n".join([
            f"--- forward ---\n{self.log('forward')[-3000:]}",
            f"--- uplink ---\n{self.uplink.log.read_text()[-2000:]}"
            if self.uplink.log.exists() else "",
            f"--- central ---\n{self.central.logs()}",
            f"--- broker ---\n{self.broker.log()[-1500:]}"])

    # --- workstations -----------------------------------------------------------------------
    def upload(self, items: Iterable[Upload]) -> dict[str, int]:
        """PUT each recording to the intake from inside the device namespace; status codes."""
        office, todo = self.office, list(items)

        def run() -> dict[str, int]:
            codes = {}
            with httpx.Client(timeout=60) as c:
                for it in todo:
                    r = c.put(f"{office.url}/v1/recordings/{it.recording_id}",
                              content=body_for(it.recording_id, it.size),
                              headers={**office.auth, "X-Priority": it.priority})
                    codes[it.recording_id] = r.status_code
            return codes

        return self.topo.call(self.topo.dev, run)

    # --- observation ------------------------------------------------------------------------
    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["recording_id"]: r for r in spool_rows(self.office)}

    def all_purged(self) -> bool:
        return all_purged(self.office)

    def wait(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                             f"{self.logs()}")

    def commits(self) -> Counter[str]:
        """How many times the receiver committed each recording (its log)."""
        pat = re.compile(r"committed " + re.escape(self.office.config.device.id)
                         + r"/(\S+) \(")
        return Counter(m for f in self.central.root.glob("*.log")
                       for m in pat.findall(f.read_text(errors="replace")))

    def check_delivered_exactly_once(self, ids: Iterable[str]) -> None:
        """Every recording is held centrally once, with the sealed bytes the office sealed,
        was committed once, and left the office only with a receipt that verifies."""
        ids = set(ids)
        rows = self.rows()
        assert set(rows) == ids, set(rows) ^ ids
        assert all(r["state"] == "purged" for r in rows.values()), \
            {k: r["state"] for k, r in rows.items() if r["state"] != "purged"}
        held = self.central.held()
        held_ids = [h["recording_id"] for h in held]
        assert len(held_ids) == len(set(held_ids)), "a recording is held twice centrally"
        assert {h["recording_id"]: h["sealed_sha256"] for h in held} == \
            {rid: r["sealed_sha256"] for rid, r in rows.items()}
        commits = self.commits()
        assert commits == Counter({rid: 1 for rid in ids}), commits
        assert check_removals_have_valid_receipts(self.office, self.central) == len(ids)

    def close(self) -> None:
        """SIGTERM every program (the uplink daemon removes its routes and rules)."""
        procs = list(self.procs.values())
        if self.uplink.proc is not None:
            procs.append(self.uplink.proc)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.central.stop()
        self.broker.close()


def build_site(topo: Topology, root: Path, uplink: dict[str, Any], *,
               forward: dict[str, Any] | None = None, custody: dict[str, Any] | None = None,
               mqtt: dict[str, Any] | None = None) -> ChainSite:
    """Broker + receiver in the central namespace; intake + uplink daemon in the device
    namespace (the forwarder is started by the caller, once the daemon has chosen a link)."""
    broker = NetnsBroker(root / "broker", topo)
    broker.start()
    central = make_central(root / "central", broker)
    central.launcher = ["ip", "netns", "exec", topo.central]
    central.start_receiver()
    extra = uplink_tables(uplink, broker.ca_path)
    extra["forward"] = dict(forward or {})
    extra["mqtt"] = dict(mqtt or {})
    office = make_chain_office(root / "office", central, device_id=DEVICE_ID,
                               custody=custody, extra=extra)
    up = Uplink(topo, config=office.config_path)
    site = ChainSite(topo, root, broker, central, office, up)
    try:
        site.start_intake()
        up.start()
    except BaseException:
        site.close()
        raise
    return site


__all__ = ["BROKER_PORT", "DEVICE_ID", "ChainSite", "NetnsBroker", "Upload", "body_for",
           "build_site", "uplink_tables"]
