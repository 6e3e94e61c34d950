"""``edge uplink``: run the failover daemon, probe once, or show the current state.

    edge uplink            run until SIGTERM (systemd unit edge-uplink.service)
    edge uplink --once     probe every link once, write uplink.json, print it; exit 0 if the
                           link carrying traffic now works
    edge uplink status     print uplink.json for a technician (--json for machines)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edge.config import load_config
from edge.uplink.announce import boottime, read_status
from edge.uplink.config import UplinkConfig, parse_uplink_config
from edge.uplink.errors import UplinkError

__all__ = ["format_status", "register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("uplink", help="wired/4G health probes and failover",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--once", action="store_true",
                   help="probe every link once, write uplink.json, print it and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="log every probe")
    p.set_defaults(handler=_run)
    sub = p.add_subparsers(dest="uplink_action", metavar="ACTION")
    st = sub.add_parser("status", help="print the current uplink state")
    st.add_argument("--json", action="store_true", help="print uplink.json as it is")
    st.set_defaults(handler=_status)


def _config(args: argparse.Namespace) -> UplinkConfig:
    return parse_uplink_config(load_config(args.config))


def _build(cfg: UplinkConfig, *, monitor: bool) -> Any:
    # Imported here so `edge uplink status` works without netlink privileges.
    from edge.uplink.daemon import UplinkDaemon
    from edge.uplink.modem import MmcliModem
    from edge.uplink.netlink import LinkMonitor, RouteManager
    from edge.uplink.probe import SocketProber

    cellular = [link.interface for link in cfg.links if link.metered]
    modem = MmcliModem(cellular[0] if cellular else None) if cfg.modem == "auto" else None
    return UplinkDaemon(
        cfg,
        routes=RouteManager(cfg.links, cfg.route_proto),
        prober=SocketProber(ca=cfg.tls_ca, cert=cfg.tls_cert, key=cfg.tls_key),
        monitor_factory=LinkMonitor if monitor else None,
        modem=modem if modem is not None and modem.available else None,
    )


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if args.verbose:
        logging.getLogger("edge").setLevel(logging.DEBUG)
    cfg = _config(args)
    running = _running_daemon(cfg)
    if running is not None:
        raise UplinkError(f"the uplink daemon is already running (pid {running}): use "
                          "`edge uplink status`, or stop it first (systemctl stop edge-uplink)")
    if args.once:
        doc = _build(cfg, monitor=False).run_once()
        print(format_status(doc))
        active = doc.get("active")
        links = doc.get("links", {})
        if active is not None:
            return 0 if links.get(active, {}).get("last_probe_ok") else 1
        return 0 if any(v.get("last_probe_ok") for v in links.values()) else 1
    daemon = _build(cfg, monitor=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.run(stop)
    return 0


def _running_daemon(cfg: UplinkConfig) -> int | None:
    """The pid of a live daemon that wrote uplink.json, if any (--once is not one)."""
    try:
        doc = read_status(cfg.run_dir)
    except UplinkError:
        return None
    pid = doc.get("pid")
    if doc.get("state") == "once" or not isinstance(pid, int) or pid == os.getpid():
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"uplink" in cmdline else None


def _status(args: argparse.Namespace) -> int:
    cfg = _config(args)
    doc = read_status(cfg.run_dir)
    if args.json:
        print(json.dumps(doc, indent=1, sort_keys=True))
    else:
        print(format_status(doc))
    return 0 if doc.get("active") else 1


def _size(n: object) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    for unit, div in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def format_status(doc: dict[str, Any]) -> str:
    """uplink.json as a few lines a technician can read over the phone."""
    lines = []
    age = boottime() - float(doc.get("updated_boottime", 0.0))
    lines.append(f"active: {doc.get('active') or 'none'} ({doc.get('state', '?')}), "
                 f"updated {age:.0f} s ago")
    last = doc.get("last_switch")
    if last:
        lines.append(f"last switch: {last.get('reason')} {last.get('from') or '-'} -> "
                     f"{last.get('to')} {age_text(last.get('at_boottime'))}"
                     + (f" ({last['why']})" if last.get("why") else ""))
    for name, link in (doc.get("links") or {}).items():
        carrier = "carrier" if link.get("carrier") else "NO CARRIER"
        probe = (f"probe {link['last_probe_ms']:.0f} ms" if link.get("last_probe_ok")
                 else f"probe FAILED ({link.get('last_error') or '?'})"
                 if link.get("last_probe_ok") is False else "not probed yet")
        extra = f", {link['routing_error']}" if link.get("routing_error") else ""
        lines.append(f"  {name:<6} {link.get('interface', '?'):<8} "
                     f"{str(link.get('health', '?')).upper():<8} {carrier}, "
                     f"{link.get('address') or 'no address'}, {probe}{extra}")
    b = doc.get("budget") or {}
    if b.get("interfaces"):
        lines.append(f"4G data: {_size(b.get('used_bytes'))} used since "
                     f"{b.get('period_start')} (soft cap {_size(b.get('soft_cap_bytes'))}, "
                     f"hard cap {_size(b.get('hard_cap_bytes'))}): "
                     f"{doc.get('metered_policy')}")
    m = doc.get("modem")
    if m:
        signal = m.get("signal_quality")
        lines.append(f"modem: {m.get('manufacturer') or ''} {m.get('model') or ''}, "
                     f"{m.get('operator') or 'no operator'}, "
                     f"{m.get('access_technology') or '?'}, "
                     f"signal {'?' if signal is None else signal}%")
    return "\n".join(lines)


def age_text(at: object) -> str:
    if not isinstance(at, (int, float)):
        return ""
    return f"{boottime() - at:.0f} s ago"
