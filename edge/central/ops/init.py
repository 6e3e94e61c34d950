"""``edge-central init DIR``: every key the central site needs, made once, in one folder.

Place in the data flow: the first thing central ops runs. It makes

    ca/ca.pem, ca/ca.key (0600), ca/revoked.json   the fleet CA and its revocation list
    crl.pem                                        the first CRL (the broker needs one)
    keys/central-seal.key (0600), .pub             HPKE sealing keys (devices seal to .pub)
    keys/receipt.key (0600), .pub                  Ed25519 custody-receipt signing key
    broker/server.pem, server.key (0600)           the broker's TLS server certificate
    services/central-{receiver,fleet,enrol}.pem/.key   the central programs' identities
    enrol.db                                       enrolment codes and issued certificates
    devices/                                       each issued device certificate, <id>.crt
    central.toml                                   paths, broker address, enrolment defaults

``central.toml`` is written last: a folder without it is an unfinished init, and ``init``
refuses any folder that is not empty, so a CA is never overwritten.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from edge.central.ops.access import grant_service_access
from edge.central.ops.errors import OpsError
from edge.central.ops.layout import (
    DEFAULT_PATHS,
    CentralLayout,
    load_layout,
    render_central_toml,
    write_central_toml,
)
from edge.central.ops.store import EnrolStore
from edge.durable import atomic_write_bytes
from edge.pki import (
    REVOKED_FILE,
    SERVICE_IDENTITIES,
    IdentityKind,
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
from edge.seal.keys import generate_sealing_keys, write_sealing_keys

__all__ = ["init_central", "write_receipt_keys"]


def write_receipt_keys(key: ed25519.Ed25519PrivateKey, private_path: Path,
                       public_path: Path) -> None:
    """PKCS#8 PEM private key (0600) and SubjectPublicKeyInfo PEM public key (0644)."""
    atomic_write_bytes(private_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), mode=0o600)
    atomic_write_bytes(public_path, key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        mode=0o644)


def _split_names(names: list[str]) -> tuple[list[str], list[str]]:
    dns, ips = [], []
    for n in names:
        try:
            ipaddress.ip_address(n)
        except ValueError:
            dns.append(n)
        else:
            ips.append(n)
    return dns, ips


def init_central(directory: Path, *, broker_host: str, broker_port: int = 8883,
                 service_port: int = 8884,
                 broker_names: list[str] | None = None, apn: str = "",
                 ca_passphrase_file: Path | None = None,
                 service_group: str | None = None,
                 now: datetime | None = None) -> CentralLayout:
    """Make the central folder. ``broker_names`` (DNS names or IP addresses) go into the
    broker certificate; the default is ``broker_host`` alone. ``service_group``: the group
    the central services run as (``edge-central``), given read access to what they use
    (``edge.central.ops.access``); None keeps the whole folder root's."""
    directory = Path(directory).absolute()
    if directory.exists() and any(directory.iterdir()):
        raise OpsError(f"{directory} is not empty: init never overwrites a fleet CA; choose "
                       "an empty folder (a half-finished init has no central.toml: remove it "
                       "and run init again)", key="central.init_exists")
    at = now or datetime.now(UTC)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    paths = {k: directory / v for k, v in DEFAULT_PATHS.items()}
    for sub in ("ca_dir", "services_dir", "bundles_dir", "device_certs_dir"):
        paths[sub].mkdir(mode=0o700, exist_ok=True)
    for name in ("sealing_private_key", "broker_cert"):
        paths[name].parent.mkdir(mode=0o700, exist_ok=True)

    passphrase = None
    if ca_passphrase_file is not None:
        passphrase = Path(ca_passphrase_file).read_bytes().strip() or None

    ca = create_fleet_ca(now=at)
    ca.save(paths["ca_dir"], passphrase=passphrase)
    revoked = RevocationList(paths["ca_dir"] / REVOKED_FILE)
    write_crl(paths["crl"], revoked.build_crl(ca, now=at))

    write_sealing_keys(generate_sealing_keys(), paths["sealing_private_key"],
                       paths["sealing_public_key"])
    write_receipt_keys(ed25519.Ed25519PrivateKey.generate(), paths["receipt_private_key"],
                       paths["receipt_public_key"])

    dns, ips = _split_names(broker_names or [broker_host])
    broker_key = generate_p256_key()
    broker_cert = ca.issue_server_certificate(
        build_server_csr(broker_key, dns[0] if dns else ips[0]), dns_names=dns,
        ip_addresses=ips, now=at)
    save_private_key(paths["broker_key"], broker_key)
    save_certificate(paths["broker_cert"], broker_cert)

    store = EnrolStore(paths["enrol_db"])
    try:
        for name in sorted(SERVICE_IDENTITIES):
            key = generate_device_key()
            cert = ca.issue_client_certificate(build_csr(key, name),
                                               expect=IdentityKind.SERVICE, now=at)
            save_private_key(paths["services_dir"] / f"{name}.key", key)
            save_certificate(paths["services_dir"] / f"{name}.pem", cert)
            with store.transaction() as db:
                store.add_cert(db, serial=cert.serial_number, identity=name, kind="service",
                               issued_at=at.timestamp(),
                               not_after=cert.not_valid_after_utc.timestamp(),
                               pem=cert.public_bytes(serialization.Encoding.PEM).decode())
        with store.transaction() as db:
            store.add_cert(db, serial=broker_cert.serial_number, identity=broker_cert
                           .subject.rfc4514_string(), kind="broker", issued_at=at.timestamp(),
                           not_after=broker_cert.not_valid_after_utc.timestamp(),
                           pem=broker_cert.public_bytes(serialization.Encoding.PEM).decode())
    finally:
        store.close()

    write_central_toml(directory, render_central_toml(
        broker_host=broker_host, broker_port=broker_port, service_port=service_port, apn=apn,
        ca_passphrase_file=ca_passphrase_file))
    layout = load_layout(directory)
    if service_group is not None:
        grant_service_access(layout, service_group)
    return layout
