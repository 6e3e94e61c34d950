"""The ``[uplink]`` table: which interfaces are the office's uplinks and every threshold.

Read once at start by ``edge uplink``; the forwarder never reads it (it learns what it needs
from ``state_dir/run/uplink.json``). Thresholds are here, not in code, so a technician can
slow failover down on a line known to be bufferbloated, or shorten everything in tests.

Example::

    [uplink]
    targets = ["mqtt.central.example.go.id:8883", "probe.central.example.go.id:443"]
    tls_ca = "/etc/edge/central-ca.pem"
    holddown_s = 60

    [uplink.wired]
    interface = "eth0"

    [uplink.4g]
    interface = "wwan0"        # QMI/MBIM; "ppp0" for PPP sticks, "usb0" for HiLink
    gateway = "none"           # point-to-point: a plain "default dev wwan0" route

    [uplink.budget]
    period_start_day = 5
    soft_cap = "8GB"
    hard_cap = "10GB"
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import Config, Section
from edge.errors import ConfigError

__all__ = [
    "LINK_NAMES",
    "BudgetConfig",
    "LinkConfig",
    "PolicyConfig",
    "Target",
    "UplinkConfig",
    "parse_target",
    "parse_uplink_config",
]

# Link names, in order of preference. They are the role names in uplink.json too.
LINK_NAMES = ("wired", "4g")

_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]{1,253}$")

# Route protocol number marking every route and rule this daemon owns (iproute2 shows
# "proto 77"). Nothing else on Raspberry Pi OS uses it.
ROUTE_PROTO = 77


@dataclass(frozen=True)
class Target:
    """An end-to-end probe target: the central broker, or a second host to tell a broker
    outage apart from a link outage."""

    host: str
    port: int
    tls: bool = True
    server_name: str | None = None  # TLS name to verify; default: host

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class LinkConfig:
    name: str                  # "wired" or "4g"
    interface: str
    rank: int                  # 0 = most preferred
    metered: bool
    gateway: str               # "auto", "none" (point-to-point) or an IPv4 address
    interval_s: float          # probe period while this link carries traffic
    standby_interval_s: float  # probe period while idle and nothing is wrong
    urgent_interval_s: float   # probe period while idle and the active link is failing
    timeout_s: float
    tls_every_s: float         # a full TLS handshake instead of a TCP probe this often
    table: int                 # per-link routing table (probes and replies under rp_filter)
    rule_priority: int         # "from <addr> lookup main suppress_prefixlength 0"; +1: table
    metric: int                # metric of this link's main-table default route when active


@dataclass(frozen=True)
class PolicyConfig:
    fail_after: int = 3           # consecutive failed probes: link down
    rise_after: int = 2           # consecutive good probes: link up again
    carrier_grace_s: float = 1.5  # carrier/address lost this long: link down
    holddown_s: float = 60.0      # preferred link clean this long before failback
    startup_wait_s: float = 5.0   # at start, wait this long for the preferred link


@dataclass(frozen=True)
class BudgetConfig:
    period_start_day: int = 1
    soft_cap_bytes: int = 8 * 1000**3
    hard_cap_bytes: int = 10 * 1000**3
    small_recording_bytes: int = 2 * 1000**2
    persist_every_bytes: int = 4 * 1024**2
    sample_interval_s: float = 5.0


@dataclass(frozen=True)
class UplinkConfig:
    links: tuple[LinkConfig, ...]
    targets: tuple[Target, ...]
    policy: PolicyConfig
    budget: BudgetConfig
    state_dir: Path
    run_dir: Path
    budget_file: Path
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    status_interval_s: float = 10.0
    modem: str = "auto"
    modem_interval_s: float = 60.0
    route_proto: int = ROUTE_PROTO

    def link(self, name: str) -> LinkConfig:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)


def parse_target(item: object) -> Target:
    """``"host:port"`` or ``{host = "...", port = 8883, tls = true, server_name = "..."}``."""
    if isinstance(item, str):
        host, sep, port_text = item.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError('write it as "host:port", e.g. "mqtt.central.example:8883"')
        return _target(host, int(port_text), True, None)
    if isinstance(item, dict):
        unknown = set(item) - {"host", "port", "tls", "server_name"}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
        t_host, port = item.get("host"), item.get("port")
        tls, name = item.get("tls", True), item.get("server_name")
        if not isinstance(t_host, str) or not isinstance(port, int) or isinstance(port, bool):
            raise ValueError("needs host (string) and port (number)")
        if not isinstance(tls, bool):
            raise ValueError("tls must be true or false")
        if name is not None and not isinstance(name, str):
            raise ValueError("server_name must be a string")
        return _target(t_host, port, tls, name)
    raise ValueError('must be "host:port" or a table with host and port')


def _target(host: str, port: int, tls: bool, name: str | None) -> Target:
    if not _HOST_RE.match(host):
        raise ValueError(f"{host!r} is not a host name or IPv4 address")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return Target(host=host, port=port, tls=tls, server_name=name)


def _check_gateway(sec: Section, value: str) -> str:
    if value in ("auto", "none"):
        return value
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(
            f"{sec.source}: [{sec.name}] gateway = {value!r}: use \"auto\" (from DHCP), "
            "\"none\" (point-to-point links such as ppp0 or raw-IP wwan0) or an IPv4 address"
        ) from None
    return value


_LINK_DEFAULTS: dict[str, dict[str, Any]] = {
    # wired is unmetered: probe it fast all the time so failover and failback are quick.
    "wired": {"interface": "eth0", "metered": False, "interval_s": 1.0,
              "standby_interval_s": 1.0, "urgent_interval_s": 1.0, "timeout_s": 1.0,
              "tls_every_s": 300.0},
    # 4G is metered: idle probes are rare; fast only while it carries traffic or is needed.
    "4g": {"interface": "", "metered": True, "interval_s": 5.0,
           "standby_interval_s": 30.0, "urgent_interval_s": 1.0, "timeout_s": 2.0,
           "tls_every_s": 1800.0},
}


def _parse_link(sec: Section, name: str, rank: int, table_base: int, prio_base: int,
                metric_base: int, tls_every: float | None) -> LinkConfig | None:
    d = _LINK_DEFAULTS[name]
    iface = sec.text("interface", d["interface"])
    if iface and not _IFNAME_RE.match(iface):
        raise ConfigError(f"{sec.source}: [{sec.name}] interface = {iface!r}: not an interface "
                          "name; see `ip link` for the names on this machine")
    gateway = _check_gateway(sec, sec.text("gateway", "auto"))
    metered = sec.flag("metered", d["metered"])
    interval = sec.number("interval_s", d["interval_s"], min=0.05, max=600)
    standby = sec.number("standby_interval_s", d["standby_interval_s"], min=0.05, max=3600)
    urgent = sec.number("urgent_interval_s", d["urgent_interval_s"], min=0.05, max=600)
    timeout = sec.number("timeout_s", d["timeout_s"], min=0.05, max=60)
    tls = sec.number("tls_every_s", d["tls_every_s"] if tls_every is None else tls_every,
                     min=0.0, max=86400)
    table = sec.integer("table", table_base + rank, min=1, max=252)
    prio = sec.integer("rule_priority", prio_base + 2 * rank, min=1, max=32000)
    metric = sec.integer("metric", metric_base + rank, min=0, max=2**31)
    sec.check_unknown()
    if not iface:
        return None
    return LinkConfig(name=name, interface=iface, rank=rank, metered=metered, gateway=gateway,
                      interval_s=interval, standby_interval_s=standby, urgent_interval_s=urgent,
                      timeout_s=timeout, tls_every_s=tls, table=table, rule_priority=prio,
                      metric=metric)


def parse_uplink_config(cfg: Config) -> UplinkConfig:
    """Validate ``[uplink]``; a bad value stops ``edge uplink`` naming the key and the fix."""
    u = cfg.section("uplink")
    targets = tuple(u.list_of("targets", parse_target, []))
    if not targets:
        raise ConfigError(
            f"{cfg.source}: [uplink] targets is missing: add the central broker and a second "
            'host, e.g. targets = ["mqtt.central.example:8883", "probe.central.example:443"]'
        )
    policy = PolicyConfig(
        fail_after=u.integer("fail_after", 3, min=1, max=100),
        rise_after=u.integer("rise_after", 2, min=1, max=100),
        carrier_grace_s=u.number("carrier_grace_s", 1.5, min=0.0, max=600),
        holddown_s=u.number("holddown_s", 60.0, min=0.0, max=86400),
        startup_wait_s=u.number("startup_wait_s", 5.0, min=0.0, max=600),
    )
    table_base = u.integer("table_base", 101, min=1, max=250)
    prio_base = u.integer("rule_priority", 1000, min=1, max=32000)
    metric_base = u.integer("route_metric", 10, min=0, max=2**31 - 8)
    # [uplink] tls_every_s sets every link's TLS cadence; a link's own key overrides it.
    tls_every = (u.number("tls_every_s", 300.0, min=0.0, max=86400)
                 if "tls_every_s" in u.data else None)
    links = []
    for rank, name in enumerate(LINK_NAMES):
        link = _parse_link(u.sub(name), name, rank, table_base, prio_base, metric_base,
                           tls_every)
        if link is not None:
            links.append(link)
    if not links:
        raise ConfigError(f"{cfg.source}: [uplink] no link configured: set [uplink.wired] "
                          'interface = "eth0" and/or [uplink.4g] interface = "wwan0"')
    if len({link.interface for link in links}) != len(links):
        raise ConfigError(f"{cfg.source}: [uplink] wired and 4g use the same interface: "
                          "give each link its own interface")

    b = u.sub("budget")
    budget = BudgetConfig(
        period_start_day=b.integer("period_start_day", 1, min=1, max=31),
        soft_cap_bytes=b.size("soft_cap", "8GB", min=1),
        hard_cap_bytes=b.size("hard_cap", "10GB", min=1),
        small_recording_bytes=b.size("small_recording", "2MB"),
        persist_every_bytes=b.size("persist_every", "4MiB", min=64 * 1024),
        sample_interval_s=b.number("sample_interval_s", 5.0, min=0.05, max=600),
    )
    b.check_unknown()
    if budget.soft_cap_bytes > budget.hard_cap_bytes:
        raise ConfigError(f"{cfg.source}: [uplink.budget] soft_cap is above hard_cap: the soft "
                          "cap (bulk waits for wired) must come before the hard cap")

    tls_client = u.flag("tls_client_cert", True)
    state_dir = cfg.device.state_dir
    out = UplinkConfig(
        links=tuple(links),
        targets=targets,
        policy=policy,
        budget=budget,
        state_dir=state_dir,
        run_dir=state_dir / "run",
        budget_file=u.path("budget_file", str(state_dir / "uplink-budget.json")),
        tls_ca=u.opt_path("tls_ca"),
        tls_cert=cfg.identity.cert if tls_client else None,
        tls_key=cfg.identity.key if tls_client and cfg.identity.cert else None,
        status_interval_s=u.number("status_interval_s", 10.0, min=0.05, max=3600),
        modem=u.text("modem", "auto", choices=("auto", "off")),
        modem_interval_s=u.number("modem_interval_s", 60.0, min=1.0, max=3600),
    )
    u.check_unknown()
    return out

