"""``edge-central fleet``: run the fleet view (MQTT subscriber + store + dashboard/API/metrics).

    edge-central fleet serve --broker mqtt.central:8884 --mqtt-ca ca.pem \\
        --mqtt-cert central-fleet.pem --mqtt-key central-fleet.key \\
        --store sqlite:///var/lib/edge-central/fleet.db --listen 127.0.0.1:8080
    edge-central fleet serve --config /etc/edge-central/central.toml   # what the unit runs
    edge-central fleet forget kec-3171-01      # decommissioned office: drop it and its history

The store URL can come from ``$EDGE_FLEET_STORE`` so a PostgreSQL password stays out of
the process list. Broker settings left out come from the ``central.toml`` that ``edge-central
init`` writes (``--config``, else ``$EDGE_CONFIG``, ``$EDGE_CENTRAL_DIR/central.toml``,
``/etc/edge-central/central.toml``): the broker's service listener (``[broker]
service_host``/``service_port``), the fleet CA and the ``central-fleet`` identity.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.config import parse_size
from edge.errors import ConfigError
from edge.health.sdnotify import Notifier

__all__ = ["parse_hostport", "register"]

DEFAULT_STORE = "sqlite:///var/lib/edge-central/fleet.db"


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[::1]:port`` → (host, port)."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{text!r}: missing ']' in an IPv6 address")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{text!r}: expected [address]:port")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = _port(p, text)
    if not host:
        raise ConfigError(f"{text!r}: no host name")
    return host, port


def _port(p: str, text: str) -> int:
    try:
        n = int(p)
    except ValueError:
        raise ConfigError(f"{text!r}: port {p!r} is not a number") from None
    if not 0 < n < 65536:
        raise ConfigError(f"{text!r}: port must be 1-65535")
    return n


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("fleet", help="fleet view: dashboard, JSON API, Prometheus metrics",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)

    s = sub.add_parser("serve", help="subscribe to every office and serve the fleet view")
    s.add_argument("--config", type=Path,
                   help="central.toml to take the broker settings left out from (default "
                        "$EDGE_CONFIG, $EDGE_CENTRAL_DIR/central.toml or "
                        "/etc/edge-central/central.toml)")
    s.add_argument("--broker", help="MQTT broker host[:port] (default port 8883; default: "
                   "the service listener named in central.toml)")
    s.add_argument("--mqtt-ca", type=Path, help="fleet CA certificate (PEM)")
    s.add_argument("--mqtt-cert", type=Path, help="this service's client certificate (PEM)")
    s.add_argument("--mqtt-key", type=Path, help="its private key (PEM)")
    s.add_argument("--client-id", default="central-fleet",
                   help="MQTT client id = certificate CN (default central-fleet)")
    s.add_argument("--insecure-plain-mqtt", action="store_true",
                   help="plain TCP without certificates; loopback brokers only (bench, demo)")
    s.add_argument("--store", default=os.environ.get("EDGE_FLEET_STORE", DEFAULT_STORE),
                   help="sqlite:///path.db or postgresql://user@host/db "
                        f"(default $EDGE_FLEET_STORE or {DEFAULT_STORE})")
    s.add_argument("--listen", default="127.0.0.1:8080",
                   help="address:port for the dashboard, API and /metrics (default "
                        "127.0.0.1:8080; put a TLS reverse proxy with login in front)")
    s.add_argument("--offices", type=Path,
                   help="CSV device_id,office,region: names to show and search")
    s.add_argument("--interval", type=float, default=60.0,
                   help="the appliances' telemetry interval, seconds (default 60)")
    s.add_argument("--stale-intervals", type=int, default=3,
                   help="missed reports before an office is stale (default 3)")
    s.add_argument("--backlog-warn", type=int, default=3600,
                   help="backlog age to flag, seconds (default 3600)")
    s.add_argument("--backlog-crit", type=int, default=4 * 3600,
                   help="backlog age that needs action, seconds (default 14400)")
    s.add_argument("--disk-low", default="2GiB", help="free space below this is low (2GiB)")
    s.add_argument("--mobile-warn", type=float, default=0.8,
                   help="fraction of the 4G budget to flag (default 0.8)")
    s.add_argument("--keep-fine-days", type=float, default=2.0,
                   help="days of 5-minute history to keep (default 2)")
    s.add_argument("--keep-coarse-days", type=float, default=30.0,
                   help="days of hourly history to keep (default 30)")
    s.add_argument("--flush-interval", type=float, default=1.0,
                   help="seconds between batch writes to the store (default 1)")
    s.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    s.set_defaults(handler=serve)

    f = sub.add_parser("forget", help="drop a decommissioned office and its history")
    f.add_argument("device_id")
    f.add_argument("--store", default=os.environ.get("EDGE_FLEET_STORE", DEFAULT_STORE))
    f.set_defaults(handler=forget)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from edge.central.fleet.derive import Thresholds
    from edge.central.fleet.directory import Directory, load_directory
    from edge.central.fleet.model import Retention
    from edge.central.fleet.service import FleetService
    from edge.central.fleet.store import open_store
    from edge.central.fleet.subscriber import BrokerConfig, FleetSubscriber
    from edge.central.fleet.web import create_app

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _fill_from_central_toml(args)
    host, port = parse_hostport(args.broker, 8883)
    if args.insecure_plain_mqtt and not _is_loopback(host):
        raise ConfigError(f"--insecure-plain-mqtt with broker {host!r}: plain MQTT is only "
                          "allowed to a loopback broker; use --mqtt-ca/--mqtt-cert/--mqtt-key")
    broker = BrokerConfig(host, port, args.mqtt_ca, args.mqtt_cert, args.mqtt_key,
                          client_id=args.client_id, insecure_plain=args.insecure_plain_mqtt)
    broker.check()
    listen_host, listen_port = parse_hostport(args.listen, 8080)
    try:
        disk_low = parse_size(args.disk_low)
    except ValueError:
        raise ConfigError(f"--disk-low {args.disk_low!r}: use a size like 2GiB") from None
    if args.interval <= 0 or args.stale_intervals < 1 or not 0 < args.mobile_warn <= 1:
        raise ConfigError("--interval must be > 0, --stale-intervals >= 1, "
                          "--mobile-warn in (0, 1]")
    thresholds = Thresholds(interval_s=args.interval, stale_intervals=args.stale_intervals,
                            backlog_warn_s=args.backlog_warn, backlog_crit_s=args.backlog_crit,
                            disk_low_bytes=disk_low, mobile_warn_fraction=args.mobile_warn)
    retention = Retention(((300, int(args.keep_fine_days * 86400)),
                           (3600, int(args.keep_coarse_days * 86400))))
    directory = load_directory(args.offices) if args.offices else Directory()

    store = open_store(args.store, retention)
    service = FleetService(store, thresholds, directory=directory,
                           flush_interval_s=args.flush_interval)
    service.start()
    subscriber = FleetSubscriber(service, broker)
    subscriber.start()

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises a captured SIGTERM after shutting down, which would kill the
            # process before the last batch is written: we handle the signals ourselves.
            yield

    server = Server(uvicorn.Config(create_app(service), host=listen_host, port=listen_port,
                                   log_level="warning", access_log=False))

    def stop(signum: int, frame: object) -> None:
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    notifier = Notifier()

    def watchdog() -> None:
        # Type=notify: ready once the web server listens, then ping while it runs
        while not server.started and not server.should_exit:
            time.sleep(0.1)
        notifier.ready(status=f"serving on {listen_host}:{listen_port}")
        while not server.should_exit:
            notifier.ping()
            time.sleep(5.0)
        notifier.stopping()

    threading.Thread(target=watchdog, name="sd-notify", daemon=True).start()
    try:
        server.run()
    finally:
        subscriber.stop()
        service.stop()
        store.close()
    return 0


def _fill_from_central_toml(args: argparse.Namespace) -> None:
    """``--broker``/``--mqtt-*`` left out: from central.toml, resolved as the receiver
    resolves it (``edge.central.settings``), with the ``central-fleet`` identity."""
    if args.broker and (args.insecure_plain_mqtt
                        or (args.mqtt_ca and args.mqtt_cert and args.mqtt_key)):
        return
    from edge.central.settings import find_config, load_settings

    path = find_config(args.config)
    if path is None:
        raise ConfigError("no broker given: pass --broker HOST[:PORT] with --mqtt-ca, "
                          "--mqtt-cert and --mqtt-key, or --config central.toml (the file "
                          "'edge-central init' writes)")
    s = load_settings(path)
    if not args.broker:
        if not s.broker_host:
            raise ConfigError(f"{path}: [broker] needs host (and service_port): the broker "
                              "address central services connect to")
        args.broker = f"{s.broker_host}:{s.broker_port}"
    args.mqtt_ca = args.mqtt_ca or s.ca
    if s.services_dir is not None:
        args.mqtt_cert = args.mqtt_cert or s.services_dir / "central-fleet.pem"
        args.mqtt_key = args.mqtt_key or s.services_dir / "central-fleet.key"


def forget(args: argparse.Namespace) -> int:
    from edge.central.fleet.store import open_store

    store = open_store(args.store)
    try:
        gone = store.forget(args.device_id)
    finally:
        store.close()
    print(f"{args.device_id}: {'forgotten' if gone else 'not in the fleet store'}")
    return 0 if gone else 1
