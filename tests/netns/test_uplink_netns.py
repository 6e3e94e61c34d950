"""The uplink daemon on real links: namespaces, veth, a real broker, real faults.

Each test builds the office/ISP/central namespaces (topology.py), starts mosquitto as the
probe target and ``edge uplink`` inside the device namespace, breaks a link the way the field
does, and checks uplink.json, the kernel's routes and a long-lived flow. Thresholds are short
(FAST in uplink_harness.py) but mean the same as in production; the time bounds asserted are
the policy's guarantees plus slack for a loaded CI machine, never speed targets.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.netns.topology import DEV_ADDR, HERE, Topology
from tests.netns.uplink_harness import (
    FAST,
    Uplink,
    boottime,
    merge,
    needs_netns,
    sink_bytes,
    wait_growing,
)

pytestmark = [pytest.mark.netns, needs_netns]

GRACE = FAST["carrier_grace_s"]
HOLD = FAST["holddown_s"]
W = FAST["wired"]
# silent loss: fail_after probes, each at most max(interval, timeout) apart, + the last timeout
SILENT_BOUND = FAST["fail_after"] * max(W["interval_s"], W["timeout_s"]) + W["timeout_s"]
SLACK = 1.5  # scheduling on a loaded 2-core CI machine


def flow_events(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_route_manager_on_a_real_kernel(topo: Topology) -> None:
    assert topo.ca is not None
    out = subprocess.run(["ip", "netns", "exec", topo.dev, sys.executable,
                          str(HERE / "route_check.py"), str(topo.ca), topo.isp("wired")],
                         capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(HERE.parents[1]), "PATH": "/usr/sbin:/usr/bin:"
                              "/sbin:/bin"})
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    # strict rp_filter drops the standby link's replies unless our per-link rules exist
    assert r["standby_probe_without_rules"] == "timeout"
    assert r["prepare"] == [None, None]
    assert r["standby_probe_with_rules"] == "ok" and r["active_probe"] == "ok"
    assert r["active_after_first"] == "wired"
    # the new default route is added before the old one is deleted: never no route
    assert r["switch_messages"] == [["RTM_NEWROUTE", 11], ["RTM_DELROUTE", 10]]
    assert r["route_get"] == "wwan0" and r["active_after_switch"] == "4g"
    # carrier loss is heard of at once (measured ~10 ms), the address stays
    assert r["carrier_notice_ms"] is not None
    assert r["facts_after_down"] == {"carrier": False, "address": "192.0.2.2"}
    assert r["left_after_cleanup"] == []


def test_carrier_loss_fails_over_the_flow_follows_and_fails_back_after_holddown(
        topo: Topology, uplink: Callable[..., Uplink]) -> None:
    up = uplink()
    up.wait_active("wired", 10)
    sink = topo.start_sink()
    flow = topo.start_flow(up.run_dir)
    wait_growing(sink, DEV_ADDR["wired"], 10)

    t0 = boottime()
    topo.carrier("wired", False)
    doc = up.wait_active("4g", GRACE + 5)
    took = doc["last_switch"]["at_boottime"] - t0
    assert GRACE - 0.05 <= took <= GRACE + SLACK, took  # not before the grace, soon after
    assert doc["last_switch"]["reason"] == "failover"
    assert topo.route_dev() == "wwan0"
    # the long-lived flow continues over 4G after one reconnect
    wait_growing(sink, DEV_ADDR["4g"], 5)
    assert any(e["event"] == "switch" and e["active"] == "4g" for e in flow_events(flow))
    assert doc["links"]["wired"]["carrier"] is False and doc["links"]["4g"]["healthy"]

    t1 = boottime()
    topo.carrier("wired", True)
    doc = up.wait_active("wired", HOLD + 8)
    back = doc["last_switch"]["at_boottime"] - t1
    assert back >= HOLD, back  # never before the wired link has been clean for the hold-down
    assert back <= HOLD + SLACK + 1.0, back
    assert doc["switch_seq"] == 3  # start, failover, failback: nothing else
    wait_growing(sink, DEV_ADDR["wired"], 5)
    assert topo.route_dev() == "eth0"


def test_silent_blackhole_fails_over_within_the_bound_and_back(
        topo: Topology, uplink: Callable[..., Uplink]) -> None:
    up = uplink()
    up.wait_active("wired", 10)
    t0 = boottime()
    topo.blackhole("wired", True)
    doc = up.wait_active("4g", SILENT_BOUND + 5)
    took = doc["last_switch"]["at_boottime"] - t0
    assert took <= SILENT_BOUND + SLACK, took
    wired = doc["links"]["wired"]
    assert wired["carrier"] is True and wired["health"] == "down"  # carrier never dropped
    assert "probes failed" in doc["last_switch"]["why"]
    assert topo.route_dev() == "wwan0"

    t1 = boottime()
    topo.blackhole("wired", False)
    doc = up.wait_active("wired", HOLD + 8)
    assert doc["last_switch"]["at_boottime"] - t1 >= HOLD


def test_bursts_below_the_thresholds_never_switch(
        topo: Topology, uplink: Callable[..., Uplink]) -> None:
    # A cable wiggle of 0.1 s stops traffic for up to ~1.1 s: after carrier returns the
    # kernel re-enables the device's queue (and reports carrier-up) only when its linkwatch
    # work runs, at most once a second. So "below the thresholds" needs fail_after probe
    # periods and the grace above that (production: 3 x 1 s and 1.5 s).
    up = uplink(fail_after=4, carrier_grace_s=1.5,
                wired={"interval_s": 0.5, "timeout_s": 0.3, "standby_interval_s": 0.5})
    up.wait_active("wired", 10)
    for _ in range(3):
        topo.short_bursts("wired")
    doc = up.status()
    assert doc["active"] == "wired" and doc["switch_seq"] == 1, doc["last_switch"]
    log = up.log.read_text()
    assert "FAILED" in log  # the bursts were seen by the probes, and tolerated


def test_hilink_modem_with_carrier_but_dead_cellular_is_not_used(
        topo: Topology, uplink: Callable[..., Uplink]) -> None:
    topo.blackhole("4g", True)  # carrier up, DHCP address, nothing gets through
    up = uplink()
    up.wait_active("wired", 10)
    doc = up.wait(lambda d: d["links"]["4g"]["health"] == "down", 10, "4g down")
    assert doc["links"]["4g"]["carrier"] is True
    topo.carrier("wired", False)
    doc = up.wait(lambda d: d["state"] == "stranded", GRACE + 5, "stranded")
    assert doc["active"] == "wired"  # moving to a dead link would not help
    topo.blackhole("4g", False)
    doc = up.wait_active("4g", 10)
    assert doc["last_switch"]["reason"] == "failover"


def test_captive_portal_on_4g_is_caught_by_tls_probes(
        topo: Topology, uplink: Callable[..., Uplink]) -> None:
    topo.portal("4g", True)  # TCP connects succeed at the ISP, TLS is not ours
    up = uplink(tls_every_s=60.0)
    up.wait_active("wired", 10)
    doc = up.wait(lambda d: d["links"]["4g"]["health"] == "down", 10, "4g down")
    g = doc["links"]["4g"]
    assert g["last_error"].startswith("tls") and g["carrier"] is True
    assert g["probes"]["tls"] >= FAST["fail_after"]  # escalated to TLS until one succeeds
    topo.carrier("wired", False)
    doc = up.wait(lambda d: d["state"] == "stranded", GRACE + 5, "stranded")
    assert doc["active"] == "wired"
    topo.portal("4g", False)
    doc = up.wait_active("4g", 10)
    assert doc["links"]["4g"]["last_error"] == ""


def test_new_address_and_admin_down_are_reconciled(
        topo: Topology, uplink: Callable[..., Uplink]) -> None:
    up = uplink()
    up.wait_active("wired", 10)
    # the 4G modem gets a new address from its DHCP: rules follow, probes keep working
    topo.ip(topo.dev, "addr", "del", "198.51.100.2/24", "dev", "wwan0")
    topo.ip(topo.dev, "addr", "add", "198.51.100.3/24", "dev", "wwan0")
    t = boottime()
    up.wait(lambda d: d["links"]["4g"]["address"] == "198.51.100.3"
            and d["links"]["4g"]["last_probe_ok"] and d["updated_boottime"] > t + 0.5, 10,
            "4g probed on its new address")
    rules = topo.ip(topo.dev, "rule")
    assert "from 198.51.100.3 lookup 102" in rules and "198.51.100.2" not in rules
    # admin-down of the wired port deletes its routes (the DHCP one too) ...
    topo.ip(topo.dev, "link", "set", "eth0", "down")
    up.wait_active("4g", GRACE + 5)
    topo.ip(topo.dev, "link", "set", "eth0", "up")
    # ... admin-up does not bring the DHCP route back; the remembered gateway does
    doc = up.wait_active("wired", HOLD + 10)
    assert doc["links"]["wired"]["gateway"] == "192.0.2.1"
    main = topo.ip(topo.dev, "route", "show", "table", "main", "default")
    assert "via 192.0.2.1 dev eth0 proto 77 metric 10" in main
    assert topo.route_dev() == "eth0"


def test_4g_budget_counts_shaped_traffic_and_survives_sigkill(
        topo: Topology, uplink: Callable[..., Uplink]) -> None:
    topo.shape("4g", "4mbit")
    budget = {"budget": {"soft_cap": "300kB", "hard_cap": "900kB", "persist_every": "64KiB",
                         "sample_interval_s": 0.2}}
    up = uplink(**budget)
    up.wait_active("wired", 10)
    rx0, tx0 = topo.counters("4g")
    topo.carrier("wired", False)
    up.wait_active("4g", GRACE + 5)
    sink = topo.start_sink()
    topo.start_flow(up.run_dir)
    doc = up.wait(lambda d: d["metered_policy"] == "priority_only", 20, "soft cap")
    assert doc["budget"]["used_bytes"] >= 300_000
    doc = up.wait(lambda d: d["metered_policy"] == "telemetry_only", 20, "hard cap")
    sent = sink_bytes(sink, DEV_ADDR["4g"])
    assert sent > 0

    # kill -9: nothing is lost, at most persist_every is added
    used_before = up.status()["budget"]["used_bytes"]
    up.stop(signal.SIGKILL)
    rx1, tx1 = topo.counters("4g")
    assert used_before <= (rx1 - rx0) + (tx1 - tx0) + 64 * 1024  # counted from the counters
    up2 = Uplink(topo, merge(FAST, budget)).start()
    doc = up2.wait(lambda d: d.get("pid") != doc.get("pid") and "budget" in d, 10, "restart")
    assert doc["budget"]["used_bytes"] >= used_before
    # the budget file is written sparsely, not on every sample
    budget_file = up.state_dir / "uplink-budget.json"
    assert json.loads(budget_file.read_text())["committed_bytes"] >= used_before
    assert up2.stop() == 0
    final = json.loads(budget_file.read_text())
    assert final["committed_bytes"] == final["used_bytes"]  # clean stop: exact


def test_once_and_status_for_the_technician(topo: Topology) -> None:
    up = Uplink(topo, FAST)
    topo.blackhole("4g", True)
    r = up.cli("--once")
    assert r.returncode == 0, r.stderr  # the kernel's current route (wired) works
    doc = up.status()
    assert doc["state"] == "once"
    assert doc["links"]["wired"]["last_probe_ok"] is True
    assert doc["links"]["4g"]["last_probe_ok"] is False
    assert doc["links"]["4g"]["last_error"] == "timeout"
    assert "4g" in r.stdout and "FAILED" in r.stdout
    # probing set up the per-link routing but did not touch the main default route
    assert "proto 77" not in topo.ip(topo.dev, "route", "show", "table", "main")
    st = up.cli("status")
    assert st.returncode == 1 and "active: none" in st.stdout  # no daemon has chosen a link
    js = up.cli("status", "--json")
    assert json.loads(js.stdout)["links"]["wired"]["interface"] == "eth0"
    # a second daemon, or --once beside a running one, is refused with a hint
    up.start()
    up.wait(lambda d: d.get("state") != "once", 10, "daemon running")
    again = up.cli("--once")
    assert again.returncode == 1 and "already running" in again.stderr
