"""The whole custody chain over real, breakable uplinks.

Central namespace: Mosquitto with the repo's config and ``edge-central receive``. Device
namespace: ``edge intake``, ``edge forward`` and ``edge uplink`` as real processes sharing
one edge.toml (tests/netns/chain_harness.py), wired and 4G each through its own ISP
namespace, both shaped with tbf so a batch is still in flight when the fault comes. The
faults are the field's: carrier lost, a silent blackhole upstream, short flaps, the 4G
budget's soft cap. Each test proves the path (interface counters, the broker's log of where
the device connected from) and that every recording was committed centrally exactly once and
left the office only with a valid receipt. Thresholds are short (uplink_harness.FAST); the
time bounds are the policy's guarantees plus slack, and the forwarder's keepalive is the
production 20 s so a connection left stuck on a dead link would show.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netns.chain_harness import DEVICE_ID, ChainSite, Upload, build_site
from tests.netns.topology import DEV_ADDR, Topology, topology
from tests.netns.uplink_harness import FAST, boottime, merge, needs_netns

pytestmark = [pytest.mark.netns, needs_netns]

GRACE = FAST["carrier_grace_s"]
HOLD = FAST["holddown_s"]
W = FAST["wired"]
SILENT_BOUND = FAST["fail_after"] * max(W["interval_s"], W["timeout_s"]) + W["timeout_s"]
SLACK = 1.5        # scheduling on a loaded 2-core CI machine
KEEPALIVE_S = 20   # production: a drop that waited for keepalive would take this long
RATE = "16mbit"    # both links, both ways: ~2 MB/s, so a few MiB take a few seconds


def batch(tag: str, big: list[int], small: int = 5) -> list[Upload]:
    """Small recordings around multi-MiB ones, in upload order."""
    items = [Upload(f"{tag}-s{i}", 40_000 + 1000 * i) for i in range(small)]
    items += [Upload(f"{tag}-big{i}", size) for i, size in enumerate(big)]
    items += [Upload(f"{tag}-t{i}", 20_000 + 1000 * i) for i in range(small)]
    return items


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Callable[..., ChainSite]]:
    sites: list[ChainSite] = []
    with topology(tmp_path / "net") as topo:
        def start(**uplink_over: Any) -> ChainSite:
            topo.shape("wired", RATE)
            topo.shape("4g", RATE)
            site = build_site(topo, tmp_path / "site", merge(FAST, uplink_over),
                              mqtt={"keepalive_s": KEEPALIVE_S})
            sites.append(site)
            site.uplink.wait_active("wired", 10)
            site.start_forwarder()
            site.wait(lambda: site.broker.device_connects(DEVICE_ID) == [DEV_ADDR["wired"]],
                      15, "the forwarder connected over wired")
            return site
        try:
            yield start
        finally:
            for site in sites:
                site.close()


def upload_all(site: ChainSite, items: list[Upload]) -> None:
    codes = site.upload(items)
    assert set(codes.values()) == {201}, codes


def sealed(site: ChainSite, ids: set[str]) -> int:
    return sum(r["sealed_size"] for rid, r in site.rows().items() if rid in ids)


def fault(topo: Topology, kind: str, on: bool) -> None:
    if kind == "carrier":
        topo.carrier("wired", not on)
    else:
        topo.blackhole("wired", on)


@pytest.mark.parametrize("kind", ["carrier", "blackhole"])
def test_wired_fault_mid_batch_fails_over_to_4g_loses_nothing_and_fails_back(
        chain: Callable[..., ChainSite], kind: str) -> None:
    site = chain()
    topo = site.topo
    first = batch("a", [3 * 1024 * 1024, 2_500_000])
    ids = {u.recording_id for u in first}
    wired0, g0 = topo.counters("wired")[1], topo.counters("4g")[1]
    upload_all(site, first)
    total = sealed(site, ids)

    # --- the fault, while the multi-MiB recordings are on the wire -------------------------
    site.wait(lambda: topo.counters("wired")[1] - wired0 > 2_500_000, 20, "mid-transfer")
    t0 = boottime()
    wired_sent = topo.counters("wired")[1] - wired0
    fault(topo, kind, True)
    assert not site.all_purged(), "the batch finished before the fault: nothing was proved"
    doc = site.uplink.wait_active("4g", (GRACE if kind == "carrier" else SILENT_BOUND) + 5)
    switched = doc["last_switch"]["at_boottime"]
    bound = GRACE if kind == "carrier" else SILENT_BOUND
    assert switched - t0 <= bound + SLACK, switched - t0
    # the forwarder left the dead link at once: not after its 20 s keepalive
    site.wait(lambda: DEV_ADDR["4g"] in site.broker.device_connects(DEVICE_ID),
              KEEPALIVE_S / 4, "the forwarder connected over 4G")
    assert boottime() - switched < KEEPALIVE_S / 4

    site.wait(site.all_purged, 60, "every receipt over 4G")
    site.check_delivered_exactly_once(ids)
    # what had not left over wired before the cut went over 4G (more: resends, headers)
    g_sent = topo.counters("4g")[1] - g0
    assert g_sent >= total - wired_sent, (g_sent, total, wired_sent)

    # --- wired returns: back after the hold-down, and new work goes over wired --------------
    t1 = boottime()
    fault(topo, kind, False)
    doc = site.uplink.wait_active("wired", HOLD + 10)
    assert doc["last_switch"]["at_boottime"] - t1 >= HOLD
    assert doc["switch_seq"] == 3  # start, failover, failback: no flapping
    site.wait(lambda: site.broker.device_connects(DEVICE_ID)[-1] == DEV_ADDR["wired"],
              KEEPALIVE_S / 4, "the forwarder reconnected over wired")
    second = batch("c", [1_500_000], small=3)
    wired1, g1 = topo.counters("wired")[1], topo.counters("4g")[1]
    upload_all(site, second)
    ids |= {u.recording_id for u in second}
    site.wait(site.all_purged, 60, "every receipt over wired")
    site.check_delivered_exactly_once(ids)
    new = sealed(site, {u.recording_id for u in second})
    assert topo.counters("wired")[1] - wired1 >= new
    assert topo.counters("4g")[1] - g1 < new / 10  # only the 4G probes
    assert site.broker.device_connects(DEVICE_ID) == [
        DEV_ADDR["wired"], DEV_ADDR["4g"], DEV_ADDR["wired"]]


def test_flaps_below_the_thresholds_neither_switch_nor_lose_a_recording(
        chain: Callable[..., ChainSite]) -> None:
    # As in test_uplink_netns: after a 0.1 s cable wiggle the kernel re-enables the queue
    # only at its next linkwatch run (up to ~1 s), so the thresholds sit above that.
    site = chain(fail_after=4, carrier_grace_s=1.5,
                 wired={"interval_s": 0.5, "timeout_s": 0.3, "standby_interval_s": 0.5})
    topo = site.topo
    topo.shape("wired", "8mbit")  # ~8 s for the batch: longer than the flaps
    items = batch("d", [3 * 1024 * 1024, 3 * 1024 * 1024, 2 * 1024 * 1024])
    g0 = topo.counters("4g")[1]
    upload_all(site, items)
    for round_ in range(3):
        if round_ == 2:
            assert not site.all_purged(), "the batch finished before the flaps: no proof"
        topo.short_bursts("wired")
    site.wait(site.all_purged, 60, "every receipt")
    site.check_delivered_exactly_once({u.recording_id for u in items})
    doc = site.uplink.status()
    assert doc["active"] == "wired" and doc["switch_seq"] == 1, doc["last_switch"]
    assert "FAILED" in site.uplink.log.read_text()  # the probes saw the flaps
    assert set(site.broker.device_connects(DEVICE_ID)) == {DEV_ADDR["wired"]}
    assert topo.counters("4g")[1] - g0 < 200_000  # probes only


def test_4g_over_its_soft_cap_sends_small_and_urgent_and_bulk_waits_for_wired(
        chain: Callable[..., ChainSite]) -> None:
    # A tiny plan: the standby probes alone take it over the soft cap.
    site = chain(budget={"soft_cap": "2kB", "hard_cap": "1GB", "small_recording": "100kB",
                         "persist_every": "64KiB", "sample_interval_s": 0.2})
    topo = site.topo
    site.uplink.wait(lambda d: d["metered_policy"] == "priority_only", 20, "soft cap")
    topo.carrier("wired", False)
    site.uplink.wait_active("4g", GRACE + 5)
    site.wait(lambda: site.broker.device_connects(DEVICE_ID)[-1] == DEV_ADDR["4g"],
              KEEPALIVE_S / 4, "the forwarder connected over 4G")

    g0 = topo.counters("4g")[1]
    bulk = [Upload("e-bulk0", 1_200_000), Upload("e-bulk1", 1_500_000)]
    small = [Upload(f"e-small{i}", 30_000) for i in range(3)]
    urgent = [Upload("e-urgent", 600_000, priority="urgent")]
    upload_all(site, bulk + small + urgent)
    passing = {u.recording_id for u in small + urgent}
    waiting = {u.recording_id for u in bulk}

    def passed() -> bool:
        rows = site.rows()
        return all(rows[rid]["state"] == "purged" for rid in passing)

    site.wait(passed, 30, "small and urgent recordings over 4G")
    time.sleep(2.0)  # two spool polls: bulk would be well on its way by now at 2 MB/s
    rows = site.rows()
    assert {rows[rid]["state"] for rid in waiting} == {"stored"}
    assert not waiting & {h["recording_id"] for h in site.central.held()}
    assert topo.counters("4g")[1] - g0 < sealed(site, passing) + 300_000
    assert site.uplink.status()["active"] == "4g"

    # wired returns: bulk goes, over wired
    wired0 = topo.counters("wired")[1]
    topo.carrier("wired", True)
    site.uplink.wait_active("wired", HOLD + 10)
    site.wait(site.all_purged, 60, "bulk over wired")
    site.check_delivered_exactly_once(passing | waiting)
    assert topo.counters("wired")[1] - wired0 >= sealed(site, waiting)
    assert topo.counters("4g")[1] - g0 < sealed(site, passing) + 300_000
