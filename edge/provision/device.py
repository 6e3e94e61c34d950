"""The technician's steps on the Pi, from a checked bundle to a configured appliance.

Place in the data flow: ``edge provision`` calls these in order; each goes through a
``Host`` (the real system, or a staging root with a plan of system changes).

1. ``prepare``: refuse to overwrite a provisioned device (unless ``force``); make the
   device identity key and the LAN intake key HERE (ECDSA P-256, 0600; the private keys
   never leave the device), or reuse the ones made for this same code by an interrupted
   run; install the fleet CA and central public keys from the bundle.
2. ``request``: the two CSRs (identity: CN = device id; intake server).
3. (online) ``edge.provision.claim.exchange`` / (offline) the request file and, later,
   the answer file from ``edge-central sign-csr``.
4. ``install_answer``: check the certificates (fleet CA, our keys, our id) and install them.
5. ``configure``: ``/etc/edge/edge.toml``; ``setup_system``: user ``edge`` and groups,
   directories, owners and modes; ``configure_apn`` (NetworkManager, if present);
   ``issue_tokens`` (printed once); ``start_services``.

State between steps and across a crash or an offline round trip lives in
``state_dir/provision/pending.json`` (root only): claim id, device id, request id.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.config import load_config
from edge.intake.tokens import TokenStore
from edge.pki import (
    CLOCK_SKEW,
    PkiError,
    build_csr,
    build_server_csr,
    generate_device_key,
    load_private_key,
    private_key_pem,
    verify_client_certificate,
)
from edge.pki.names import IdentityKind
from edge.provision.bundle import Bundle
from edge.provision.errors import ProvisionError
from edge.provision.host import Host
from edge.provision.messages import EnrolAnswer, EnrolRequest

__all__ = [
    "DEVICE_GROUPS",
    "DEVICE_PATHS",
    "SERVICE_USER",
    "DevicePaths",
    "Provisioner",
    "render_edge_toml",
]

SERVICE_USER = "edge"
DEVICE_GROUPS = ("gpio",)  # the panel drives the LEDs as group gpio
MIN_QUOTA = 1024**3
MAX_QUOTA = 8 * 1024**3
RESERVE = 1024**3
_CERT_PEM = 0o640


@dataclass(frozen=True)
class DevicePaths:
    """Where things live on a device (absolute device paths; a staging root prefixes)."""

    etc: Path = Path("/etc/edge")
    state_dir: Path = Path("/var/lib/edge")

    @property
    def config(self) -> Path:
        return self.etc / "edge.toml"

    @property
    def key(self) -> Path:
        return self.etc / "device.key"

    @property
    def cert(self) -> Path:
        return self.etc / "device.crt"

    @property
    def ca(self) -> Path:
        return self.etc / "fleet-ca.crt"

    @property
    def intake_key(self) -> Path:
        return self.etc / "intake.key"

    @property
    def intake_cert(self) -> Path:
        return self.etc / "intake.crt"

    @property
    def sealing_public(self) -> Path:
        return self.etc / "central-seal.pub"

    @property
    def receipt_public(self) -> Path:
        return self.etc / "central-receipt.pub"

    @property
    def spool(self) -> Path:
        return self.state_dir / "spool"

    @property
    def tokens(self) -> Path:
        return self.state_dir / "tokens.json"

    @property
    def provision_dir(self) -> Path:
        return self.state_dir / "provision"

    @property
    def pending(self) -> Path:
        return self.provision_dir / "pending.json"

    @property
    def saved_bundle(self) -> Path:
        return self.provision_dir / "bundle.json"


DEVICE_PATHS = DevicePaths()


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)  # a JSON string is a TOML basic string


def _size(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n // 1024**2}MiB"


def render_edge_toml(bundle: Bundle, paths: DevicePaths, *, quota_bytes: int,
                     reserve_bytes: int = RESERVE) -> str:
    """The device config: only tables and keys whose readers exist or are agreed."""
    return f"""# /etc/edge/edge.toml, written by `edge provision` for {bundle.device_id}.
# Reference: README.md (Configuration), docs/provisioning.md.

[device]
id = {_toml(bundle.device_id)}
office = {_toml(bundle.office)}
state_dir = {_toml(str(paths.state_dir))}

[identity]
# Made on this device at provisioning; the private key never leaves it.
key = {_toml(str(paths.key))}
cert = {_toml(str(paths.cert))}
ca = {_toml(str(paths.ca))}

[seal]
central_public_key = {_toml(str(paths.sealing_public))}
kem = {_toml(bundle.kem)}

[spool]
dir = {_toml(str(paths.spool))}
# Sized at provisioning from the free space on the card (at most 8GiB), leaving the reserve.
quota_bytes = {_toml(_size(quota_bytes))}
reserve_bytes = {_toml(_size(reserve_bytes))}

[intake]
host = "0.0.0.0"
port = 8443
# Issued by the fleet CA for "{bundle.device_id}.local" (and the fleet's common LAN names).
tls_cert = {_toml(str(paths.intake_cert))}
tls_key = {_toml(str(paths.intake_key))}
tokens_file = {_toml(str(paths.tokens))}

[mqtt]
# The central broker (from the provisioning bundle) and this device's TLS identity.
host = {_toml(bundle.broker_host)}
port = {bundle.broker_port}
ca = {_toml(str(paths.ca))}
cert = {_toml(str(paths.cert))}
key = {_toml(str(paths.key))}
receipt_public_key = {_toml(str(paths.receipt_public))}
"""


def _disk_free(path: Path) -> int:
    while not path.exists():
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def choose_quota(free_bytes: int, reserve_bytes: int = RESERVE) -> int:
    """At most 8 GiB, at most 80 % of what is free beyond the reserve, in whole MiB."""
    quota = min(MAX_QUOTA, int((free_bytes - reserve_bytes) * 0.8))
    quota -= quota % 1024**2
    if quota < MIN_QUOTA:
        raise ProvisionError(
            f"only {free_bytes // 1024**2} MiB free on the card: the spool needs at least "
            f"{(MIN_QUOTA + reserve_bytes) // 1024**2 * 5 // 4} MiB (1 GiB of recordings plus "
            "the 1 GiB reserve); use a bigger SD card", key="provision.card_too_small")
    return quota


class Provisioner:
    def __init__(self, host: Host, *, paths: DevicePaths = DEVICE_PATHS,
                 say: Callable[[str], None] = print) -> None:
        self.host = host
        self.paths = paths
        self.say = say

    # -- 1. keys and fleet files ---------------------------------------------------------
    def pending(self) -> dict[str, str] | None:
        try:
            doc = json.loads(self.host.path(self.paths.pending).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ProvisionError(f"{self.paths.pending} is damaged ({e}); remove it and "
                                 "provision again", key="provision.pending_damaged") from None
        return {str(k): str(v) for k, v in doc.items()}

    def _write_pending(self, doc: dict[str, str]) -> None:
        self.host.mkdir(self.paths.provision_dir, 0o700)
        self.host.write(self.paths.pending, json.dumps(doc, indent=1).encode(), 0o600)

    def existing_device(self) -> str | None:
        cfg_path = self.host.path(self.paths.config)
        if not cfg_path.exists():
            return None
        try:
            return load_config(cfg_path).device.id
        except Exception:  # a broken config is "something is there" all the same
            return "(unreadable config)"

    def prepare(self, bundle: Bundle, *, force: bool = False) -> EnrolRequest:
        """Keys (made here, or reused for the same claim) and the fleet's public files;
        returns the request to send."""
        existing = self.existing_device()
        pending = self.pending()
        # An interrupted run for this same code may resume (its keys are kept); a finished
        # one is a provisioned device like any other.
        same_claim = (pending is not None and pending.get("claim_id") == bundle.claim_id
                      and pending.get("stage") != "installed")
        if existing is not None and not force and not same_claim:
            raise ProvisionError(
                f"this appliance is already provisioned as {existing}; to provision it again "
                "(e.g. as a replacement) add --force: its old identity key is replaced",
                key="provision.already_provisioned")
        p = self.paths
        self.host.mkdir(p.etc, 0o750)
        self.host.mkdir(p.state_dir, 0o700)
        self.host.mkdir(p.provision_dir, 0o700)
        key_file, intake_key_file = self.host.path(p.key), self.host.path(p.intake_key)
        if same_claim and key_file.exists() and intake_key_file.exists():
            assert pending is not None
            device_key = load_private_key(key_file)
            intake_key = load_private_key(intake_key_file)
            request_id = pending["request_id"]
            self.say("resuming: the identity key made for this code is kept")
        else:
            device_key = generate_device_key()
            intake_key = generate_device_key()
            # 0600 from the first byte on disk (atomic_write_bytes creates the temp 0600)
            self.host.write(p.key, private_key_pem(device_key), 0o600)
            self.host.write(p.intake_key, private_key_pem(intake_key), 0o600)
            request_id = secrets.token_hex(16)
            self._write_pending({"claim_id": bundle.claim_id, "device_id": bundle.device_id,
                                 "request_id": request_id, "stage": "keys"})
        self.host.write(p.ca, bundle.ca_pem, _CERT_PEM)
        self.host.write(p.sealing_public, bundle.sealing_public_json, _CERT_PEM)
        self.host.write(p.receipt_public, bundle.receipt_public_pem, _CERT_PEM)
        bundle.receipt_public_key()  # refuse a bundle whose receipt key is unusable
        return EnrolRequest(request_id, build_csr(device_key, bundle.device_id),
                            build_server_csr(intake_key, f"{bundle.device_id}.local"))

    def save_bundle(self, data: bytes) -> None:
        """Keep the checked bundle for the offline second step (root only)."""
        self.host.write(self.paths.saved_bundle, data, 0o600)

    def saved_bundle(self) -> bytes:
        try:
            return self.host.path(self.paths.saved_bundle).read_bytes()
        except FileNotFoundError:
            raise ProvisionError("no offline provisioning was started on this appliance: "
                                 "run 'edge provision --bundle FILE' first",
                                 key="provision.no_pending") from None

    # -- 4. certificates -------------------------------------------------------------------
    def install_answer(self, bundle: Bundle, answer: EnrolAnswer) -> None:
        if answer.device_cert is None or answer.intake_cert is None:
            raise ProvisionError("the answer holds no certificates",
                                 key="provision.bad_answer")
        ca = bundle.ca_cert
        device_key = load_private_key(self.host.path(self.paths.key))
        intake_key = load_private_key(self.host.path(self.paths.intake_key))
        cert = answer.device_cert
        # Checked at a moment inside the certificate's own validity: this Pi's clock may be
        # far off before NTP answers (the self-test checks the clock separately).
        at = cert.not_valid_before_utc + CLOCK_SKEW + timedelta(minutes=1)
        try:
            verify_client_certificate(ca, cert, bundle.device_id, kind=IdentityKind.DEVICE,
                                      now=at)
        except PkiError as e:
            raise ProvisionError(f"the device certificate from central is not usable: "
                                 f"{e.message}", key="provision.bad_answer") from e
        if cert.public_key() != device_key.public_key():
            raise ProvisionError("the device certificate from central is for another key: "
                                 "was the answer file made for another appliance?",
                                 key="provision.bad_answer")
        self._check_intake(ca, answer.intake_cert, intake_key)
        self.host.write(self.paths.cert, _pem(cert), _CERT_PEM)
        self.host.write(self.paths.intake_cert, _pem(answer.intake_cert), _CERT_PEM)
        pending = self.pending() or {}
        self._write_pending({**pending, "stage": "installed"})

    @staticmethod
    def _check_intake(ca: x509.Certificate, cert: x509.Certificate,
                      key: ec.EllipticCurvePrivateKey) -> None:
        try:
            cert.verify_directly_issued_by(ca)
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound) as e:
            raise ProvisionError(f"the intake certificate from central is not from the fleet "
                                 f"CA ({e!r})", key="provision.bad_answer") from None
        if ExtendedKeyUsageOID.SERVER_AUTH not in eku or \
                cert.public_key() != key.public_key():
            raise ProvisionError("the intake certificate from central does not fit this "
                                 "appliance's intake key", key="provision.bad_answer")

    # -- 5. configuration and system -------------------------------------------------------
    def configure(self, bundle: Bundle, *, quota_bytes: int | None = None) -> Path:
        quota = quota_bytes or choose_quota(_disk_free(self.host.path(self.paths.state_dir)))
        text = render_edge_toml(bundle, self.paths, quota_bytes=quota)
        written = self.host.write(self.paths.config, text.encode(), _CERT_PEM)
        load_config(written)  # what we wrote must be what every program accepts
        return written

    def setup_system(self) -> None:
        p, h, user = self.paths, self.host, SERVICE_USER
        h.ensure_user(user, DEVICE_GROUPS)
        h.mkdir(p.spool, 0o700)
        for path, owner, group in (
            (p.etc, "root", user),
            (p.config, "root", user),
            (p.ca, "root", user),
            (p.cert, "root", user),
            (p.intake_cert, "root", user),
            (p.sealing_public, "root", user),
            (p.receipt_public, "root", user),
            # the programs run as "edge" and must read their keys; nobody else may
            (p.key, user, user),
            (p.intake_key, user, user),
            (p.state_dir, user, user),
            (p.spool, user, user),
            (p.provision_dir, "root", "root"),
        ):
            h.chown(path, owner, group)

    def issue_tokens(self, count: int) -> list[tuple[str, str]]:
        """Upload tokens for ``ws-01``..``ws-NN`` (only those not issued before)."""
        store = TokenStore(self.host.path(self.paths.tokens))
        have = {t["workstation"] for t in store.list() if not t.get("revoked")}
        issued = []
        for i in range(1, count + 1):
            name = f"ws-{i:02d}"
            if name not in have:
                issued.append((name, store.add(name)))
        if issued or self.host.path(self.paths.tokens).exists():
            self.host.chown(self.paths.tokens, SERVICE_USER, SERVICE_USER)
        return issued

    def start_services(self) -> str:
        if not self.host.systemd_running():
            return ("systemd is not running here: start the programs with supervisord "
                    "(provisioning/install.sh --supervisor)")
        self.host.run(["systemctl", "enable", "edge.target"])
        self.host.run(["systemctl", "restart", "edge.target"])
        return "services started (edge.target)"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
