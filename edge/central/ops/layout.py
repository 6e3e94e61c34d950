"""``central.toml``: where the central site keeps its keys, and how to reach its broker.

Place in the data flow: written once by ``edge-central init DIR``; every other ops command
(``enrol``, ``enrol-service``, ``revoke``, ``crl``, ``sign-csr``) reads it from ``--dir``
(default ``$EDGE_CENTRAL_DIR`` or ``/etc/edge-central``). Paths are relative to DIR unless
absolute, so the folder can be moved or restored from a backup as a whole.

    [broker]
    host = "mqtt.central.example.go.id"
    port = 8883
    reload_command = ["systemctl", "reload", "mosquitto"]   # after every CRL change

    [paths]            # defaults shown in DEFAULT_PATHS
    [enrol]
    ttl = "24h"        # default life of an enrolment code (at most 3 days)
    kem = "mlkem768-x25519"
    apn = ""           # 4G APN written into bundles (the technician can override)
    workstations = 2   # upload tokens issued at provisioning
    intake_names = ["edge.local"]
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from edge.config import Section
from edge.durable import atomic_write_bytes
from edge.errors import ConfigError

__all__ = [
    "CENTRAL_TOML",
    "DEFAULT_CENTRAL_DIR",
    "DEFAULT_PATHS",
    "MAX_CODE_TTL",
    "CentralLayout",
    "central_dir",
    "load_layout",
    "parse_duration",
    "render_central_toml",
    "write_central_toml",
]

CENTRAL_TOML = "central.toml"
DEFAULT_CENTRAL_DIR = Path("/etc/edge-central")
# A claim certificate lives as long as its code, and claim certificates are 3-day identities.
MAX_CODE_TTL = timedelta(days=3)

DEFAULT_PATHS: dict[str, str] = {
    "ca_dir": "ca",
    "crl": "crl.pem",
    "sealing_private_key": "keys/central-seal.key",
    "sealing_public_key": "keys/central-seal.pub",
    "receipt_private_key": "keys/receipt.key",
    "receipt_public_key": "keys/receipt.pub",
    "broker_cert": "broker/server.pem",
    "broker_key": "broker/server.key",
    "services_dir": "services",
    # Issued device certificates, <device id>.crt: the custody receivers check manifest
    # signatures with them (edge/central/devices.py).
    "device_certs_dir": "devices",
    "enrol_db": "enrol.db",
    "bundles_dir": "bundles",
}

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``3d`` → timedelta."""
    m = _DURATION_RE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration such as 30m, 24h or 3d")
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])


def central_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("EDGE_CENTRAL_DIR") or DEFAULT_CENTRAL_DIR)


@dataclass(frozen=True)
class CentralLayout:
    root: Path
    broker_host: str
    broker_port: int
    reload_command: tuple[str, ...]
    paths: dict[str, Path]
    code_ttl: timedelta = timedelta(hours=24)
    kem: str = "mlkem768-x25519"
    apn: str = ""
    workstations: int = 2
    intake_names: tuple[str, ...] = ("edge.local",)
    ca_passphrase_file: Path | None = None
    # Where central services (receiver, fleet view, enrolment) connect: the broker's service
    # listener. None: the device address (a broker without a service listener).
    service_host: str | None = None
    service_port: int | None = None

    @property
    def services_host(self) -> str:
        return self.service_host or self.broker_host

    @property
    def services_port(self) -> int:
        return self.service_port or self.broker_port

    def path(self, name: str) -> Path:
        return self.paths[name]

    def service_files(self, name: str) -> tuple[Path, Path]:
        d = self.path("services_dir")
        return d / f"{name}.pem", d / f"{name}.key"

    @property
    def lock_file(self) -> Path:
        return self.root / ".ops.lock"


def load_layout(directory: Path) -> CentralLayout:
    directory = Path(directory).absolute()
    path = directory / CENTRAL_TOML
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file: run 'edge-central init {directory}' first, "
                          "or pass --dir (or set EDGE_CENTRAL_DIR) to the central folder"
                          ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}): fix the syntax at that line"
                          ) from None
    source = str(path)
    b = Section(source, "broker", data.get("broker", {}))
    host = b.text("host")
    port = b.integer("port", 8883, min=1, max=65535)
    service_host = b.opt_text("service_host")
    service_port = b.integer("service_port", port, min=1, max=65535)
    reload_command = tuple(b.list_of("reload_command", str, []))
    b.check_unknown()
    p = Section(source, "paths", data.get("paths", {}))
    paths = {}
    for key, default in DEFAULT_PATHS.items():
        value = p.path(key, default)
        paths[key] = value if value.is_absolute() else directory / value
    passphrase = p.opt_path("ca_passphrase_file")
    p.check_unknown()
    en = Section(source, "enrol", data.get("enrol", {}))
    ttl_text = en.text("ttl", "24h")
    try:
        ttl = parse_duration(ttl_text)
    except ValueError as err:
        raise ConfigError(f"{source}: [enrol] ttl = {ttl_text!r}: {err}") from None
    if not timedelta(0) < ttl <= MAX_CODE_TTL:
        raise ConfigError(f"{source}: [enrol] ttl = {ttl_text!r}: must be more than 0 and "
                          "at most 3d (a claim certificate's life)")
    layout = CentralLayout(
        root=directory, broker_host=host, broker_port=port, reload_command=reload_command,
        service_host=service_host, service_port=service_port,
        paths=paths, code_ttl=ttl,
        kem=en.text("kem", "mlkem768-x25519", choices=("mlkem768-x25519", "x25519")),
        apn=en.text("apn", ""),
        workstations=en.integer("workstations", 2, min=0, max=50),
        intake_names=tuple(en.list_of("intake_names", str, ["edge.local"])),
        ca_passphrase_file=(passphrase if passphrase is None or passphrase.is_absolute()
                            else directory / passphrase),
    )
    en.check_unknown()
    return layout


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)


def render_central_toml(*, broker_host: str, broker_port: int, service_port: int = 8884,
                        apn: str = "", ca_passphrase_file: Path | None = None) -> str:
    path_lines = "\n".join(f"{k} = {_toml_str(v)}" for k, v in DEFAULT_PATHS.items())
    if ca_passphrase_file is not None:
        path_lines += f"\nca_passphrase_file = {_toml_str(str(ca_passphrase_file))}"
    return f"""# Central site of the e-KTP edge fleet, written by `edge-central init`.
# Paths are relative to this file's folder unless absolute. Keep the whole folder private
# (0700) and backed up: it holds the fleet CA key and the revocation list.

[broker]
# What devices connect to (it is written into every provisioning bundle).
host = {_toml_str(broker_host)}
port = {broker_port}
# What the central services (receiver, fleet view, enrolment service) connect to: the
# broker's service listener (render_broker_config(service_port=...)), reachable only from
# the central network; on the device port each certificate may hold one client id only.
# service_host defaults to host (add other names to the broker certificate with
# --broker-name at init).
service_port = {service_port}
# Run after every CRL change so Mosquitto loads it (it reads the CRL only at start and on
# SIGHUP). Empty: the ops tools print a reminder instead. On the broker host, e.g.:
#   reload_command = ["systemctl", "reload", "mosquitto"]
reload_command = []

[paths]
{path_lines}

[enrol]
ttl = "24h"                # default life of an enrolment code (at most 3d)
kem = "mlkem768-x25519"    # KEM devices seal to ("x25519" for the classic one)
apn = {_toml_str(apn)}                   # 4G APN put into bundles ("" = none)
workstations = 2           # workstation upload tokens issued at provisioning
# DNS names in each intake certificate besides "<device id>.local". Every appliance gets
# these, so a workstation can use one URL in every office; see docs/provisioning.md.
intake_names = ["edge.local"]
"""


def write_central_toml(directory: Path, text: str) -> None:
    atomic_write_bytes(Path(directory) / CENTRAL_TOML, text.encode(), mode=0o600)
