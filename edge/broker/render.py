"""Render the central broker's Mosquitto configuration from the template shipped here.

Place in the data flow: every forwarded chunk, receipt, status and telemetry message crosses
this broker. The template (``mosquitto.conf``) and the ACL (``edge.acl``) are package data,
so the rules that tests check are the rules ops deploy. ``render_broker_config`` fills in
ports and paths, copies the ACL next to the config, and writes both durably.

Mosquitto started as root drops to the ``mosquitto`` user *before* it reads its key, CA,
CRL and ACL, so those files (and every directory above them) must be readable by that
user, and the persistence directory writable by it. Tests running as root pass
``user="root"`` instead, which tells Mosquitto not to drop privileges.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from edge.durable import atomic_write_bytes
from edge.errors import ConfigError

__all__ = [
    "ACL_FILE_NAME",
    "CONFIG_FILE_NAME",
    "BrokerConfigError",
    "acl_text",
    "render_broker_config",
    "template_text",
]

CONFIG_FILE_NAME = "mosquitto.conf"
ACL_FILE_NAME = "edge.acl"

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_SESSION_EXPIRATION = re.compile(r"^\d+[hdwmy]$")
_BEGIN, _END = "#@service-listener-begin", "#@service-listener-end"
_SERVICE_LISTENER = re.compile(re.escape(_BEGIN) + r"\n.*?" + re.escape(_END) + r"\n",
                               re.DOTALL)


class BrokerConfigError(ConfigError):
    key = "broker.config"


def template_text() -> str:
    return resources.files("edge.broker").joinpath(CONFIG_FILE_NAME).read_text("utf-8")


def acl_text() -> str:
    return resources.files("edge.broker").joinpath(ACL_FILE_NAME).read_text("utf-8")


def _conf_path(name: str, value: Path | str, *, must_exist: bool = True) -> str:
    path = Path(value).absolute()  # Mosquitto resolves relative paths against its cwd
    text = str(path)
    if any(c.isspace() for c in text):
        raise BrokerConfigError(f"{name} = {text!r}: Mosquitto config paths cannot contain "
                                "spaces or line breaks; move the file")
    if must_exist and not path.exists():
        raise BrokerConfigError(f"{name} = {text!r} does not exist; create it first "
                                "(edge.pki writes the CA, broker certificate and CRL)")
    return text


def _positive(name: str, value: int, low: int = 1, high: int = 2**31 - 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BrokerConfigError(f"{name} = {value!r}: expected a whole number {low}..{high}")
    return str(value)


def render_broker_config(
    out_dir: Path,
    *,
    port: int,
    service_port: int | None = None,
    service_bind_address: str | None = None,
    cafile: Path,
    certfile: Path,
    keyfile: Path,
    crlfile: Path | None = None,
    persistence_dir: Path | None = None,
    bind_address: str | None = None,
    acl_file: Path | None = None,
    user: str | None = None,
    log_dest: str = "stderr",
    autosave_interval: int = 60,
    session_expiration: str = "30d",
    max_inflight_messages: int = 32,
    max_queued_messages: int = 1000,
    max_queued_bytes: int = 128 * 1024 * 1024,
    max_packet_size: int = 192 * 1024,
) -> Path:
    """Write ``out_dir/mosquitto.conf`` (and ``out_dir/edge.acl``) and return the config path.

    ``crlfile`` should always be given in production: without it a revoked certificate is
    still accepted. ``persistence_dir`` keeps sessions and queued messages across restarts.
    ``acl_file`` replaces the packaged ACL (tests use it to probe Mosquitto's semantics).
    ``service_port`` (production always gives one) opens the second listener for central
    services, bound to ``service_bind_address`` (the central private network or loopback;
    default 127.0.0.1), and makes the device listener force client id = certificate CN.
    Without it there is one listener and a client id is the client's choice.
    """
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    if acl_file is None:
        acl_path = out_dir / ACL_FILE_NAME
        atomic_write_bytes(acl_path, acl_text().encode("utf-8"), mode=0o644)
    else:
        acl_path = Path(acl_file).absolute()
    for name, addr in (("bind_address", bind_address),
                       ("service_bind_address", service_bind_address)):
        if addr is not None and (not addr or any(c.isspace() for c in addr)):
            raise BrokerConfigError(f"{name} = {addr!r}: give one address or host")
    if service_port is not None and service_port == port:
        raise BrokerConfigError(f"service_port = {service_port}: must differ from port (the "
                                "device listener)")
    if user is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]*", user):
        raise BrokerConfigError(f"user = {user!r} is not a Unix user name")
    if not _SESSION_EXPIRATION.match(session_expiration):
        raise BrokerConfigError(f"session_expiration = {session_expiration!r}: use a number "
                                "and one of h d w m y, e.g. '30d'")
    if not re.fullmatch(r"(stderr|stdout|syslog|topic|file \S+)", log_dest):
        raise BrokerConfigError(f"log_dest = {log_dest!r}: use stderr, stdout, syslog or "
                                "'file /path'")

    if crlfile is not None:
        crl_block = ("# Revoked certificates (signed by the fleet CA). Loaded at start and on "
                     "SIGHUP only.\n# Once its next-update passes, EVERY client is refused: "
                     "it is re-signed daily\n# (edge.pki.crl_status warns well before).\n"
                     f"crlfile {_conf_path('crlfile', crlfile)}")
    else:
        crl_block = ("# No crlfile given: revoked certificates are still accepted until they "
                     "expire.\n# Production always sets one.")
    if persistence_dir is not None:
        pdir = Path(persistence_dir).absolute()
        pdir.mkdir(parents=True, exist_ok=True)
        persistence_block = (
            "persistence true\n"
            f"persistence_location {_conf_path('persistence_dir', pdir)}/\n"
            f"autosave_interval {_positive('autosave_interval', autosave_interval)}\n"
            "autosave_on_changes false"
        )
    else:
        persistence_block = ("# No persistence_dir given: sessions and queued messages live "
                             "in memory only.\npersistence false")
    user_line = (f"# Run as this user (when started as root).\nuser {user}" if user
                 else "# user: left at Mosquitto's default, \"mosquitto\".")

    if service_port is not None:
        clientid_block = (
            "# Client id = certificate CN on this listener: a device can hold only its own\n"
            "# session, never take over another device's (central services, which need\n"
            "# several client ids per CN, use the service listener below).\n"
            "use_username_as_clientid true")
    else:
        clientid_block = (
            "# No service listener was configured, so the client id stays the client's choice\n"
            "# here (receivers sharing the central-receiver CN need distinct ones). The price:\n"
            "# a device holding a valid fleet certificate can connect with another device's\n"
            "# client id and kick it off (it reads none of that session's messages: the ACL\n"
            "# checks its own CN). Production configures the service listener.")

    values = {
        "acl_file": _conf_path("acl_file", acl_path),
        "user_line": user_line,
        "max_packet_size": _positive("max_packet_size", max_packet_size, 20),
        "max_inflight_messages": _positive("max_inflight_messages", max_inflight_messages,
                                           1, 65535),
        "max_queued_messages": _positive("max_queued_messages", max_queued_messages),
        "max_queued_bytes": _positive("max_queued_bytes", max_queued_bytes),
        "persistence_block": persistence_block,
        "session_expiration": session_expiration,
        "log_dest": log_dest,
        "port": _positive("port", port, 1, 65535),
        "clientid_block": clientid_block,
        "service_port": ("" if service_port is None
                         else _positive("service_port", service_port, 1, 65535)),
        "service_bind_address": service_bind_address or "127.0.0.1",
        "bind_address": bind_address or "",
        "cafile": _conf_path("cafile", cafile),
        "certfile": _conf_path("certfile", certfile),
        "keyfile": _conf_path("keyfile", keyfile),
        "crl_block": crl_block,
    }

    def fill(m: re.Match[str]) -> str:
        try:
            return values[m.group(1)]
        except KeyError:
            raise BrokerConfigError(f"the broker template has an unknown placeholder "
                                    f"{m.group(0)!r}; the package is damaged") from None

    template = template_text()
    if service_port is None:
        template = _SERVICE_LISTENER.sub(
            "# (not rendered: no service port given)\n", template)
    template = template.replace(_BEGIN + "\n", "").replace(_END + "\n", "")
    text = _PLACEHOLDER.sub(fill, template)
    text = re.sub(r"^(listener \d+) $", r"\1", text, flags=re.MULTILINE)
    conf_path = out_dir / CONFIG_FILE_NAME
    atomic_write_bytes(conf_path, text.encode("utf-8"), mode=0o644)
    return conf_path


