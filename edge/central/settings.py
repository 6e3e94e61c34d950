"""Settings of the central custody programs (``edge-central receive``, ``list``, ``open``).

Place in the data flow: read once at start from ``central.toml`` (the file ``edge-central
init`` writes), then overridden by command-line flags, so tests and demos can run without a
file. The file is found at ``--config``, else ``$EDGE_CONFIG``, else
``$EDGE_CENTRAL_DIR/central.toml``, else ``/etc/edge-central/central.toml`` if it exists.
Relative paths in the file are relative to the file's folder.

    [central]
    data_dir = "/var/lib/edge-central/custody"   # custody store (index + sealed files)
    ca = "ca/ca.pem"                  # fleet CA: broker TLS trust + device certificate chain
    crl = "crl.pem"                   # optional: devices revoked here are refused
    cert = "services/central-receiver.pem"       # MQTT identity central-receiver
    key = "services/central-receiver.key"
    receipt_key = "keys/receipt.key"  # Ed25519 private key (PEM) that signs custody receipts
    sealing_key = "keys/central-seal.key"        # only for `edge-central open`
    device_certs_dir = "devices"      # issued device certificates, <device id>.crt
    broker_host = "mqtt.central.example"
    broker_port = 8884                # the broker's service listener
    client_id = "central-receiver-a"  # default central-receiver-<host>-<pid> (no resume)
    session_expiry_s = 300            # broker keeps our queue this long across a restart
    verify_workers = 2                # threads hashing completed recordings

    [central.custody]                 # protocol limits, see docs/custody-protocol.md §9
    op_timeout_s = 120

Keys missing from ``[central]`` fall back to the ``[broker]`` (service_host or host,
service_port or port) and ``[paths]``
(ca_dir, crl, receipt_private_key, sealing_private_key, services_dir, device_certs_dir)
tables that ``edge-central init`` writes, so one file serves the ops tools and the receiver
(the enrolment authority files each issued device certificate in ``device_certs_dir``).
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge.config import Section
from edge.custody.config import parse_receiver_section
from edge.custody.receiver import ReceiverConfig
from edge.errors import ConfigError

__all__ = [
    "CLIENT_ID_RE",
    "DEFAULT_CONFIG",
    "DEFAULT_DATA_DIR",
    "CentralSettings",
    "add_arguments",
    "default_client_id",
    "find_config",
    "load_settings",
    "settings_from_args",
]

DEFAULT_CONFIG = Path("/etc/edge-central/central.toml")
DEFAULT_DATA_DIR = Path("/var/lib/edge-central/custody")
# MQTT client id = receiver id in every receipt: the receipt format's alphabet and length.
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")

# Flag name for each setting, to say how to fix a missing one.
FLAGS = {
    "data_dir": "--data-dir", "ca": "--ca", "crl": "--crl", "cert": "--cert", "key": "--key",
    "receipt_key": "--receipt-key", "sealing_key": "--sealing-key",
    "device_certs_dir": "--device-certs", "broker_host": "--broker",
}


def default_client_id(hostname: str | None = None, pid: int | None = None) -> str:
    """``central-receiver-<short host name>-<pid>``: distinct per process, within 64 chars."""
    host = (hostname or socket.gethostname()).split(".")[0]
    host = re.sub(r"[^A-Za-z0-9-]", "-", host).strip("-") or "host"
    suffix = f"-{os.getpid() if pid is None else pid}"
    prefix = "central-receiver-"
    return prefix + host[:64 - len(prefix) - len(suffix)] + suffix


@dataclass(frozen=True)
class CentralSettings:
    source: str                          # the file read, or "command line"
    data_dir: Path = DEFAULT_DATA_DIR
    ca: Path | None = None
    crl: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    receipt_key: Path | None = None
    sealing_key: Path | None = None
    device_certs_dir: Path | None = None
    services_dir: Path | None = None     # the central services' identities (fleet view's too)
    broker_host: str | None = None
    broker_port: int = 8883
    client_id: str | None = None         # None: default_client_id(), no session resume
    session_expiry_s: int = 300
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    verify_workers: int = 2
    custody: ReceiverConfig = field(default_factory=lambda: ReceiverConfig("unset"))

    def require(self, *names: str) -> None:
        """ConfigError naming every missing setting, its key and its flag."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            what = ", ".join(f"{n} ({FLAGS.get(n, '--' + n)})" for n in missing)
            raise ConfigError(f"{self.source}: [central] {what} not set: add the key(s) to "
                              "central.toml or pass the flag(s)")

    def receiver_config(self, receiver_id: str) -> ReceiverConfig:
        return replace(self.custody, receiver_id=receiver_id)


def find_config(arg: str | Path | None) -> Path | None:
    """The config file to read, or None to run from flags alone."""
    if arg:
        return Path(arg)
    if os.environ.get("EDGE_CONFIG"):
        return Path(os.environ["EDGE_CONFIG"])
    if os.environ.get("EDGE_CENTRAL_DIR"):
        return Path(os.environ["EDGE_CENTRAL_DIR"]) / "central.toml"
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file: pass --config PATH or set EDGE_CONFIG "
                          "(run 'edge-central init' to create central.toml)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}): fix the syntax at that line") \
            from None


def load_settings(path: Path | None, overrides: dict[str, Any] | None = None
                  ) -> CentralSettings:
    """Settings from ``path`` (None: defaults only) with ``overrides`` (flag values; None
    entries mean "not given") applied last."""
    values: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        values = _from_file(path, _read(path))
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    settings = CentralSettings(source=source, **values)
    if settings.client_id is not None and not CLIENT_ID_RE.match(settings.client_id):
        raise ConfigError(f"{source}: client_id {settings.client_id!r}: use 1-64 of "
                          "[A-Za-z0-9._-] (it names this receiver in every receipt)")
    if settings.reconnect_min_s > settings.reconnect_max_s:
        raise ConfigError(f"{source}: reconnect_min_s must not exceed reconnect_max_s")
    return settings


def _from_file(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    base = path.parent.absolute()
    source = str(path)

    def rel(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p)

    # Fallbacks from the tables `edge-central init` writes (read, never validated here:
    # they belong to the ops tools).
    broker = data.get("broker", {}) if isinstance(data.get("broker"), dict) else {}
    paths = data.get("paths", {}) if isinstance(data.get("paths"), dict) else {}

    def from_paths(name: str, *tail: str) -> Path | None:
        v = paths.get(name)
        return rel(Path(v, *tail)) if isinstance(v, str) and v else None

    services = paths.get("services_dir")
    central = data.get("central", {})
    if not isinstance(central, dict):
        raise ConfigError(f"{source}: central = {central!r}: must be a [central] table")
    c = Section(source, "central", central)
    out: dict[str, Any] = {
        "data_dir": rel(c.path("data_dir", str(DEFAULT_DATA_DIR))),
        "ca": rel(c.opt_path("ca")) or from_paths("ca_dir", "ca.pem"),
        "crl": rel(c.opt_path("crl")) or from_paths("crl"),
        "cert": rel(c.opt_path("cert")) or (from_paths("services_dir",
                                                       "central-receiver.pem")
                                             if services else None),
        "key": rel(c.opt_path("key")) or (from_paths("services_dir", "central-receiver.key")
                                          if services else None),
        "receipt_key": rel(c.opt_path("receipt_key")) or from_paths("receipt_private_key"),
        "sealing_key": rel(c.opt_path("sealing_key")) or from_paths("sealing_private_key"),
        "services_dir": from_paths("services_dir"),
        "device_certs_dir": rel(c.opt_path("device_certs_dir")) or from_paths(
            "device_certs_dir") or base / "devices",
        # the broker's service listener if central.toml names one, else its device address
        "broker_host": c.opt_text("broker_host") or next(
            (v for v in (broker.get("service_host"), broker.get("host"))
             if isinstance(v, str) and v), None),
        "broker_port": c.integer("broker_port", _int(broker.get("service_port"),
                                                     _int(broker.get("port"), 8883)),
                                 min=1, max=65535),
        "client_id": c.opt_text("client_id"),
        "session_expiry_s": c.integer("session_expiry_s", 300, min=0, max=7 * 86400),
        "keepalive_s": c.integer("keepalive_s", 30, min=5, max=3600),
        "reconnect_min_s": c.number("reconnect_min_s", 1.0, min=0.05),
        "reconnect_max_s": c.number("reconnect_max_s", 60.0, min=0.05),
        "verify_workers": c.integer("verify_workers", 2, min=1, max=32),
        "custody": parse_receiver_section(c.sub("custody"), "unset"),
    }
    c.check_unknown()
    return out


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# --------------------------------------------------------------------------- command line


def add_arguments(parser: Any, *, receive: bool = False) -> None:
    """The flags every central custody command shares (each overrides central.toml)."""
    g = parser.add_argument_group("settings (override central.toml)")
    g.add_argument("--config", help="central.toml (default $EDGE_CONFIG, "
                   "$EDGE_CENTRAL_DIR/central.toml or /etc/edge-central/central.toml)")
    g.add_argument("--data-dir", type=Path, help="custody store folder [central] data_dir")
    g.add_argument("--ca", type=Path, help="fleet CA certificate (PEM)")
    g.add_argument("--device-certs", type=Path, dest="device_certs_dir",
                   help="folder of issued device certificates <device id>.crt")
    if receive:
        g.add_argument("--crl", type=Path, help="fleet CRL (PEM): revoked devices are refused")
        g.add_argument("--cert", type=Path, help="central-receiver client certificate (PEM)")
        g.add_argument("--key", type=Path, help="its private key (PEM)")
        g.add_argument("--receipt-key", type=Path,
                       help="Ed25519 private key (PEM) that signs custody receipts")
        g.add_argument("--broker", help="MQTT broker host[:port] (default port 8883)")
        g.add_argument("--client-id", help="MQTT client id = receiver id in receipts "
                       "(default central-receiver-<host>-<pid>; set it to resume sessions)")
        g.add_argument("--session-expiry", type=int, dest="session_expiry_s",
                       help="seconds the broker keeps this receiver's queue (default 300)")
    else:
        g.add_argument("--sealing-key", type=Path,
                       help="central sealing private key file (edge-sealing-private/1)")


def settings_from_args(args: Any) -> CentralSettings:
    names = ("data_dir", "ca", "crl", "cert", "key", "receipt_key", "sealing_key",
             "device_certs_dir", "client_id", "session_expiry_s")
    overrides: dict[str, Any] = {n: getattr(args, n, None) for n in names}
    broker = getattr(args, "broker", None)
    if broker:
        from edge.central.fleet_cli import parse_hostport

        overrides["broker_host"], overrides["broker_port"] = parse_hostport(broker, 8883)
    return load_settings(find_config(args.config), overrides)
