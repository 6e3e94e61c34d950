"""Netlink adapters: link facts and change notices in, routes and rules out (pyroute2).

``LinkMonitor`` runs a thread on a raw NETLINK_ROUTE socket subscribed to link, IPv4 address
and IPv4 route changes, parses each message with pyroute2's marshal and posts a ``Notice``
(with the time it arrived, ~10 ms after the kernel event) to the daemon. The daemon then
reads the authoritative facts with ``RouteManager.facts`` on its own thread; a notice is only
a nudge, so a lost or coalesced message cannot leave stale state behind.
(pyroute2's ``IPRoute.get()`` on a bound socket cannot be woken for shutdown and may buffer
messages internally, so the monitor owns its socket; ``IPRoute`` is used for requests only,
created and used on the daemon's thread.)

``RouteManager`` owns everything tagged ``proto 77``:
  * per link, table T: ``default [via GW] dev IF``; rules at P and P+1:
        from ADDR lookup main suppress_prefixlength 0   (LAN and connected routes still win)
        from ADDR lookup T                              (else: out through this link)
    so probes bound to a standby link leave through it and replies pass strict rp_filter;
  * in the main table, one default route via the active link with that link's metric.
    A switch adds the new link's route (its own metric, so no clash) before deleting the old
    one: there is no instant without a default route, and new connections follow at once
    (connections already open keep their source address, which the rules pin to the old
    link -- hence the forwarder drops its connection on a switch).
Routes installed by DHCP or pppd (other protocols, higher metrics) are never touched; they
remain the fallback when this daemon is not running.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_LINK
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from edge.uplink.announce import boottime
from edge.uplink.config import ROUTE_PROTO, LinkConfig
from edge.uplink.errors import NoInterface, NoRoute, RoutingError

__all__ = [
    "LinkFacts",
    "LinkMonitor",
    "Notice",
    "RouteManager",
    "Routes",
]

log = logging.getLogger("edge.uplink.netlink")

IFF_UP: Final = 0x1
IFF_POINTOPOINT: Final = 0x10
IFF_NOARP: Final = 0x80
IFF_LOWER_UP: Final = 0x10000
IFA_F_SECONDARY: Final = 0x01
RT_TABLE_MAIN: Final = 254


@dataclass(frozen=True)
class LinkFacts:
    ifname: str
    index: int | None       # None: no such interface (modem unplugged, ppp0 not dialled)
    admin_up: bool
    carrier: bool           # IFF_LOWER_UP: admin up and the lower layer has carrier
    address: str | None     # primary IPv4 address
    prefixlen: int | None
    pointopoint: bool       # ppp0, raw-IP wwan0: a plain "default dev IF" route works

    @classmethod
    def missing(cls, ifname: str) -> LinkFacts:
        return cls(ifname, None, False, False, None, None, False)


@dataclass(frozen=True)
class Notice:
    at: float
    kind: str               # "link", "addr" or "route"
    index: int | None
    ours: bool = False      # a route tagged with our protocol
    deleted: bool = False


class LinkMonitor:
    """Posts a ``Notice`` for every link, IPv4 address or IPv4 route change."""

    def __init__(self, on_notice: Callable[[Notice], None],
                 clock: Callable[[], float] = boottime) -> None:
        self._on_notice = on_notice
        self._clock = clock
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netlink-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._sock.close()

    def _run(self) -> None:
        marshal = MarshalRtnl()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.2)
            if not ready:
                continue
            try:
                data = self._sock.recv(1 << 16)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    # Overrun: messages were lost. Ask the daemon to re-read everything.
                    self._on_notice(Notice(self._clock(), "link", None))
                    continue
                if self._stop.is_set():
                    return
                raise
            at = self._clock()
            for msg in marshal.parse(data):
                notice = _notice(msg, at)
                if notice is not None:
                    self._on_notice(notice)


def _notice(msg: Any, at: float) -> Notice | None:
    event = msg.get("event", "")
    if event in ("RTM_NEWLINK", "RTM_DELLINK"):
        return Notice(at, "link", msg.get("index"))
    if event in ("RTM_NEWADDR", "RTM_DELADDR"):
        return Notice(at, "addr", msg.get("index"))
    if event in ("RTM_NEWROUTE", "RTM_DELROUTE") and msg.get("dst_len") == 0:
        return Notice(at, "route", msg.get("RTA_OIF"), ours=msg.get("proto") == ROUTE_PROTO,
                      deleted=event == "RTM_DELROUTE")
    return None


class Routes(Protocol):
    """What the daemon needs from routing; RouteManager is the real one."""

    def facts(self, link: LinkConfig) -> LinkFacts: ...
    def prepare(self, link: LinkConfig, facts: LinkFacts) -> str | None: ...
    def set_active(self, link: LinkConfig | None) -> None: ...
    def kernel_active(self) -> str | None: ...
    def gateway(self, link: LinkConfig) -> str | None: ...
    def close(self) -> None: ...


class RouteManager:
    """Per-link tables and rules, and the main default route; see the module comment."""

    def __init__(self, links: tuple[LinkConfig, ...] | list[LinkConfig],
                 proto: int = ROUTE_PROTO) -> None:
        self.links = {link.name: link for link in links}
        self.proto = proto
        self.ipr = IPRoute()
        # Last gateway seen per link: admin-down deletes the DHCP route and admin-up does
        # not bring it back until the next lease, but the gateway is the same.
        self._gateways: dict[str, str | None] = {}
        self._no_gateway: set[str] = set()

    def close(self) -> None:
        self.ipr.close()

    # --- facts ----------------------------------------------------------------------------
    def facts(self, link: LinkConfig) -> LinkFacts:
        found = self.ipr.link_lookup(ifname=link.interface)
        if not found:
            return LinkFacts.missing(link.interface)
        index = int(found[0])
        try:
            msg = self.ipr.get_links(index)[0]
        except NetlinkError:
            return LinkFacts.missing(link.interface)
        flags = int(msg["flags"])
        address = prefixlen = None
        for a in self.ipr.addr("dump", family=socket.AF_INET, index=index):
            if a["index"] != index or a["flags"] & IFA_F_SECONDARY:
                continue
            address, prefixlen = a.get("IFA_LOCAL") or a.get("IFA_ADDRESS"), a["prefixlen"]
            break
        return LinkFacts(ifname=link.interface, index=index, admin_up=bool(flags & IFF_UP),
                         carrier=bool(flags & IFF_LOWER_UP), address=address,
                         prefixlen=prefixlen,
                         pointopoint=bool(flags & (IFF_POINTOPOINT | IFF_NOARP)))

    def gateway(self, link: LinkConfig) -> str | None:
        return self._gateways.get(link.name)

    def _discover_gateway(self, link: LinkConfig, facts: LinkFacts) -> tuple[bool, str | None]:
        """(usable, gateway): gateway None with usable=True means a plain device route."""
        if link.gateway == "none":
            return True, None
        if link.gateway != "auto":
            return True, link.gateway
        assert facts.index is not None
        for r in self.ipr.route("dump", family=socket.AF_INET, table=RT_TABLE_MAIN):
            if (r["dst_len"] == 0 and r.get("RTA_OIF") == facts.index
                    and r["proto"] != self.proto):
                gw = r.get("RTA_GATEWAY")
                self._gateways[link.name] = gw
                return True, gw
        if link.name in self._gateways:
            return True, self._gateways[link.name]
        if facts.pointopoint:
            return True, None
        return False, None

    # --- per-link routing -----------------------------------------------------------------
    def prepare(self, link: LinkConfig, facts: LinkFacts) -> str | None:
        """Make the link's table and rules match its current address; an error key or None."""
        if facts.index is None:
            self._drop_rules(link, keep=None)
            return NoInterface.key
        if facts.address is None:
            self._drop_rules(link, keep=None)
            return "uplink.no_address"
        usable, gw = self._discover_gateway(link, facts)
        if not usable:
            if link.name not in self._no_gateway:
                log.warning("%s (%s) has no default gateway: set [uplink.%s] gateway, or check "
                            "DHCP on it", link.name, link.interface, link.name)
                self._no_gateway.add(link.name)
            self._drop_rules(link, keep=facts.address)
            self._ensure_rules(link, facts.address)
            return NoRoute.key
        self._no_gateway.discard(link.name)
        self._gateways[link.name] = gw
        try:
            self._route("replace", link, facts.index, gw, table=link.table)
        except NetlinkError as e:
            log.info("cannot set table %d for %s yet: %s", link.table, link.interface, e)
            return RoutingError.key
        self._drop_rules(link, keep=facts.address)
        self._ensure_rules(link, facts.address)
        return None

    def _route(self, cmd: str, link: LinkConfig, index: int, gw: str | None, *,
               table: int, metric: int | None = None) -> None:
        spec: dict[str, Any] = {"dst": "0.0.0.0/0", "oif": index, "table": table,
                                "proto": self.proto}
        if gw is not None:
            spec["gateway"] = gw
        if metric is not None:
            spec["priority"] = metric
        self.ipr.route(cmd, **spec)

    def _our_rules(self, link: LinkConfig) -> list[Any]:
        prios = (link.rule_priority, link.rule_priority + 1)
        return [r for r in self.ipr.rule("dump", family=socket.AF_INET)
                if r.get("FRA_PRIORITY") in prios and r.get("FRA_PROTOCOL") == self.proto]

    def _drop_rules(self, link: LinkConfig, keep: str | None) -> None:
        for r in self._our_rules(link):
            if r.get("FRA_SRC") != keep:
                with contextlib.suppress(NetlinkError):
                    self.ipr.rule("del", priority=r.get("FRA_PRIORITY"),
                                  table=r.get("FRA_TABLE"), src=r.get("FRA_SRC"),
                                  src_len=r["src_len"], protocol=self.proto)

    def _ensure_rules(self, link: LinkConfig, address: str) -> None:
        have = {(r.get("FRA_PRIORITY"), r.get("FRA_SRC")) for r in self._our_rules(link)}
        wanted: list[dict[str, Any]] = [
            {"priority": link.rule_priority, "table": RT_TABLE_MAIN, "suppress_prefixlen": 0},
            {"priority": link.rule_priority + 1, "table": link.table},
        ]
        for spec in wanted:
            if (spec["priority"], address) in have:
                continue
            try:
                self.ipr.rule("add", src=address, src_len=32, protocol=self.proto, **spec)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise RoutingError(f"cannot add rule from {address} for {link.interface}: "
                                       f"{e}; check `ip rule`") from None

    # --- the active link ------------------------------------------------------------------
    def _main_defaults(self) -> list[Any]:
        return [r for r in self.ipr.route("dump", family=socket.AF_INET, table=RT_TABLE_MAIN)
                if r["dst_len"] == 0 and r["proto"] == self.proto]

    def set_active(self, link: LinkConfig | None) -> None:
        """Default route via ``link``: add it first, then remove our other default routes."""
        keep_metric = None
        if link is not None:
            facts = self.facts(link)
            if facts.index is None:
                raise NoInterface(f"{link.interface} does not exist: check the modem/cable and "
                                  f"[uplink.{link.name}] interface")
            usable, gw = self._discover_gateway(link, facts)
            if not usable:
                raise NoRoute(f"{link.interface} has no default gateway: set "
                              f"[uplink.{link.name}] gateway, or check DHCP on it")
            try:
                self._route("replace", link, facts.index, gw, table=RT_TABLE_MAIN,
                            metric=link.metric)
            except NetlinkError as e:
                raise RoutingError(f"cannot route via {link.interface}: {e}; check "
                                   f"`ip route` and the link's address") from None
            keep_metric = link.metric
        for r in self._main_defaults():
            if r.get("RTA_PRIORITY") == keep_metric:
                continue
            with contextlib.suppress(NetlinkError):
                spec: dict[str, Any] = {"dst": "0.0.0.0/0", "table": RT_TABLE_MAIN,
                                        "proto": self.proto}
                if r.get("RTA_PRIORITY") is not None:
                    spec["priority"] = r.get("RTA_PRIORITY")
                if r.get("RTA_OIF") is not None:
                    spec["oif"] = r.get("RTA_OIF")
                self.ipr.route("del", **spec)

    def kernel_active(self) -> str | None:
        """Which link our main-table default route goes through, if any."""
        routes = sorted(self._main_defaults(), key=lambda r: r.get("RTA_PRIORITY") or 0)
        for r in routes:
            for link in self.links.values():
                if r.get("RTA_PRIORITY") == link.metric:
                    return link.name
        return None

    def route_get(self, dst: str) -> str | None:
        """The interface the kernel would use for a new connection to ``dst``."""
        with contextlib.suppress(NetlinkError, ValueError):
            ipaddress.IPv4Address(dst)
            msg = self.ipr.route("get", dst=dst)[0]
            oif = msg.get("RTA_OIF")
            if oif is not None:
                return str(self.ipr.get_links(oif)[0].get("IFLA_IFNAME"))
        return None

    def cleanup(self) -> None:
        """Remove every route and rule we own (uninstall, tests)."""
        self.set_active(None)
        for link in self.links.values():
            self._drop_rules(link, keep=None)
            with contextlib.suppress(NetlinkError):
                self.ipr.flush_routes(table=link.table, proto=self.proto)
