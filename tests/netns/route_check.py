"""Runs inside the device namespace (``route_check.py CA ISP_WIRED_NS``): RouteManager,
LinkMonitor and SocketProber against the real kernel; prints one JSON document."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import time

from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from edge.config import parse_config
from edge.uplink.config import Target, parse_uplink_config
from edge.uplink.netlink import LinkMonitor, Notice, RouteManager
from edge.uplink.probe import SocketProber

ca, isp_wired = sys.argv[1], sys.argv[2]
cfg = parse_uplink_config(parse_config({
    "device": {"id": "kec-test-01", "state_dir": "/tmp"},
    "uplink": {"targets": ["203.0.113.10:8883"], "4g": {"interface": "wwan0"}}}))
wired, g4 = cfg.link("wired"), cfg.link("4g")
target = Target("203.0.113.10", 8883)
prober = SocketProber(ca=None)
out: dict[str, object] = {}
rm = RouteManager(cfg.links)


def probe(link_if: str, src: str) -> str:
    r = prober.probe(link_if, src, target, False, 0.5)
    return "ok" if r.ok else r.error


# Strict rp_filter, only the DHCP-like routes: the standby 4G link cannot be probed.
out["standby_probe_without_rules"] = probe("wwan0", "198.51.100.2")
out["prepare"] = [rm.prepare(link, rm.facts(link)) for link in cfg.links]
rm.set_active(wired)
out["active_after_first"] = rm.kernel_active()
out["standby_probe_with_rules"] = probe("wwan0", "198.51.100.2")
out["active_probe"] = probe("eth0", "192.0.2.2")

# Watch the route messages of a switch: the new default must come before the old one goes.
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
nl.bind((0, RTMGRP_IPV4_ROUTE))
nl.settimeout(0.3)
rm.set_active(g4)
seen = []
marshal = MarshalRtnl()
try:
    while True:
        for m in marshal.parse(nl.recv(65536)):
            if m.get("dst_len") == 0 and m.get("table") == 254:
                seen.append([m["event"], m.get("RTA_PRIORITY")])
except TimeoutError:
    pass
out["switch_messages"] = seen
out["route_get"] = rm.route_get("203.0.113.30")
out["active_after_switch"] = rm.kernel_active()

# Netlink link notices: how soon after the ISP side goes down do we hear of it?
q: queue.Queue[Notice] = queue.Queue()
mon = LinkMonitor(q.put)
mon.start()
eth0 = rm.facts(wired).index
t0 = time.clock_gettime(time.CLOCK_BOOTTIME)
subprocess.run(["ip", "-n", isp_wired, "link", "set", "dn0", "down"], check=True)
latency = None
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    try:
        n = q.get(timeout=0.1)
    except queue.Empty:
        continue
    if n.kind == "link" and n.index == eth0 and not rm.facts(wired).carrier:
        latency = (n.at - t0) * 1000
        break
mon.stop()
out["carrier_notice_ms"] = latency
out["facts_after_down"] = {"carrier": rm.facts(wired).carrier,
                           "address": rm.facts(wired).address}
subprocess.run(["ip", "-n", isp_wired, "link", "set", "dn0", "up"], check=True)

rm.cleanup()
left = subprocess.run(["ip", "rule"], capture_output=True, text=True).stdout
routes = subprocess.run(["ip", "route", "show", "table", "all", "proto", "77"],
                        capture_output=True, text=True).stdout
out["left_after_cleanup"] = [line for line in (left + routes).splitlines() if "proto 77" in line
                             or "lookup 10" in line or line.startswith("default")]
rm.close()
print(json.dumps(out))
