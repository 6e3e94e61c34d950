"""A local Mosquitto run with the repo's config: for the all-in-one demo and the tests.

Renders ``edge/broker/mosquitto.conf`` + ``edge.acl`` into a work directory with a throwaway
fleet CA made by ``edge.pki`` (server certificate for 127.0.0.1/localhost and the bind
address, an empty CRL), starts ``mosquitto`` on a free port and issues client identities
(device ids, service identities) through the real key → CSR → CA path. SIGKILL, restart and
SIGHUP are there for crash tests; nothing here is used on an appliance.

A broker somewhere else than this process's loopback (e.g. inside a network namespace, as in
tests/netns/) passes ``host`` (bind address, also put in the server certificate) and overrides
``command()`` (how Mosquitto is launched) and ``accepting()`` (how readiness is checked).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from edge.broker.render import render_broker_config
from edge.pki import (
    RevocationList,
    build_csr,
    build_server_csr,
    create_fleet_ca,
    generate_device_key,
    generate_p256_key,
    save_certificate,
    save_private_key,
    write_crl,
)

__all__ = ["HOST", "MOSQUITTO", "BrokerError", "Identity", "LocalBroker", "free_port",
           "start_local_broker"]

MOSQUITTO = os.environ.get("EDGE_MOSQUITTO", os.environ.get("EDGE_TEST_MOSQUITTO",
                                                            "/usr/sbin/mosquitto"))
HOST = "127.0.0.1"
START_TIMEOUT = 10.0


class BrokerError(RuntimeError):
    """The local broker did not start, stop or reload as asked."""


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Identity:
    name: str
    cert: Path
    key: Path
    serial: int


class LocalBroker:
    """One Mosquitto with the repo's config, a throwaway fleet CA and identities from it.

    Attributes: ``host``, ``port`` (device listener), ``service_port`` (central services'
    listener, None with ``service_listener=False``), ``ca`` (the ``FleetCA``), ``ca_path``
    (PEM for clients), ``workdir``, ``config_path``, ``crl_path``, ``log_path``,
    ``persistence_dir``.
    """

    def __init__(self, workdir: Path, *, port: int | None = None,
                 acl_file: Path | None = None, with_crl: bool = True,
                 host: str = HOST, service_listener: bool = True,
                 service_port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        # Central services' listener (receivers, fleet view, enrolment): on the same host
        # here; the device listener then forces client id = certificate CN.
        self.service_port: int | None = None
        if service_listener:
            self.service_port = service_port or free_port(host)
            while self.service_port == self.port:
                self.service_port = free_port(host)
        self.ca = create_fleet_ca("edge test fleet CA")
        self.ca_path = self.workdir / "ca.pem"
        save_certificate(self.ca_path, self.ca.cert)
        self.revocations = RevocationList(self.workdir / "revoked.json")
        self.crl_path: Path | None = self.workdir / "crl.pem" if with_crl else None
        if self.crl_path is not None:
            write_crl(self.crl_path, self.revocations.build_crl(self.ca))
        self._write_server_identity()
        self.persistence_dir = self.workdir / "persist"
        self.log_path = self.workdir / "mosquitto.log"
        self.acl_file = acl_file
        self.config_path = self.render()
        self._identities: dict[str, Identity] = {}
        self._serial = itertools.count()
        self._proc: subprocess.Popen[bytes] | None = None

    # -- configuration -----------------------------------------------------------------
    def _write_server_identity(self) -> None:
        key = generate_p256_key()
        csr = build_server_csr(key, "localhost")
        # clients verify the address they dial: the bind address must be in the certificate
        ips = [HOST] if self.host == HOST else [HOST, self.host]
        cert = self.ca.issue_server_certificate(csr, dns_names=["localhost"],
                                                ip_addresses=ips)
        self.server_cert = self.workdir / "server.pem"
        self.server_key = self.workdir / "server.key"
        save_private_key(self.server_key, key)
        save_certificate(self.server_cert, cert)

    def render(self, **overrides: Any) -> Path:
        """(Re)write the config from the repo template; ``overrides`` go to
        ``render_broker_config``. Takes effect on ``reload()`` or ``restart()``."""
        args: dict[str, Any] = {
            "port": self.port,
            "bind_address": self.host,
            "service_port": self.service_port,
            "service_bind_address": self.host if self.service_port else None,
            "cafile": self.ca_path,
            "certfile": self.server_cert,
            "keyfile": self.server_key,
            "crlfile": self.crl_path,
            "persistence_dir": self.persistence_dir,
            "acl_file": self.acl_file,
            # As root, Mosquitto would drop to "mosquitto" before reading the key in our
            # 0700 temp dir; "root" tells it to stay. As non-root the line has no effect.
            "user": "root" if os.geteuid() == 0 else None,
            "log_dest": "stderr",
        }
        args.update(overrides)
        return render_broker_config(self.workdir, **args)

    @property
    def services_port(self) -> int:
        """Where central services connect: the service listener if there is one."""
        return self.service_port or self.port

    def port_for(self, name: str | None) -> int:
        """The listener an identity uses: central services (``central-...``) the service
        listener, everyone else (devices, claims) the device listener."""
        return self.services_port if name and name.startswith("central-") else self.port

    # -- identities and clients --------------------------------------------------------
    def identity(self, name: str, *, validity: timedelta | None = None,
                 fresh: bool = False) -> Identity:
        """Cert + key files for ``name`` (device id, ``central-receiver``, a claim id),
        issued through the real device-key → CSR → CA path. Cached unless ``fresh``."""
        if not fresh and name in self._identities:
            return self._identities[name]
        key = generate_device_key()
        cert = self.ca.issue_client_certificate(build_csr(key, name), validity=validity)
        n = next(self._serial)
        ident = Identity(name, self.workdir / f"id-{name}-{n}.pem",
                         self.workdir / f"id-{name}-{n}.key", cert.serial_number)
        save_private_key(ident.key, key)
        save_certificate(ident.cert, cert)
        self._identities[name] = ident
        return ident

    def revoke(self, identity: str | Identity) -> None:
        """Revoke the identity's current certificate, write the CRL and SIGHUP the broker."""
        ident = self.identity(identity) if isinstance(identity, str) else identity
        cert = x509.load_pem_x509_certificate(ident.cert.read_bytes())
        self.revocations.revoke(cert, reason=x509.ReasonFlags.key_compromise)
        if self.crl_path is None:
            raise BrokerError("this broker was started without a CRL")
        write_crl(self.crl_path, self.revocations.build_crl(self.ca))
        self.reload()

    # -- process control ---------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self._proc is None or self._proc.poll() is not None:
            raise BrokerError("the broker is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def command(self) -> list[str]:
        """The command line that runs Mosquitto (the process signalled by kill/stop/reload:
        a wrapper must exec it, as ``ip netns exec`` does)."""
        return [MOSQUITTO, "-c", str(self.config_path)]

    def accepting(self) -> bool:
        """Whether the TLS port accepts connections yet."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self) -> None:
        """Start Mosquitto and return once its TLS port accepts connections."""
        if self.running:
            raise BrokerError("already running")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._proc = subprocess.Popen(self.command(),
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self._proc.returncode} at start:\n"
                                  f"{self.log()[-3000:]}")
            if self.accepting():
                return
            time.sleep(0.02)
        self.kill()
        raise BrokerError(f"mosquitto did not open port {self.port} in {START_TIMEOUT} s:\n"
                          f"{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no goodbye, no final persistence save (a crash, or a power cut)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Mosquitto saves its persistence database and exits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise BrokerError("mosquitto ignored SIGTERM") from None

    def restart(self) -> None:
        """Clean stop (if running) and start on the same port with the same persistence."""
        self.stop()
        self.start()

    def reload(self, timeout: float = 5.0) -> None:
        """SIGHUP: reload config, ACL, certificates and CRL; returns once Mosquitto has."""
        before = self.log().count("Reloading config")
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.log().count("Reloading config") <= before:
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not log a reload within {timeout} s")
            time.sleep(0.02)

    def close(self) -> None:
        """Stop the broker."""
        if self.running:
            with contextlib.suppress(BrokerError):
                self.stop(5)


@contextlib.contextmanager
def start_local_broker(workdir: Path, cls: type[LocalBroker] = LocalBroker,
                       **kwargs: Any) -> Any:
    """A started broker in ``workdir``; stopped on exit. A port taken between ``free_port``
    and Mosquitto's bind is retried with another."""
    for attempt in range(3):
        broker = cls(workdir / f"b{attempt}", **kwargs)
        try:
            broker.start()
        except BrokerError:
            if "Address already in use" in broker.log() and attempt < 2:
                continue
            raise
        break
    try:
        yield broker
    finally:
        broker.close()
