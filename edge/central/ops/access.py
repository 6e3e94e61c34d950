"""Which central files the central services may read, and nothing more.

Place in the flow: ``edge-central init`` makes the central folder private to root (0700,
keys 0600). The custody receiver and the fleet view run as the unprivileged
``edge-central`` user (systemd units, ``install.sh --central``), so they need read access to
exactly what they use, through their group:

- the folder itself and ``central.toml`` (which names everything else);
- the fleet CA certificate (broker TLS trust, device certificate chain) and the CRL;
- the receipt signing key (the receiver signs custody receipts);
- their own MQTT identities (``central-receiver``, ``central-fleet``);
- the issued device certificates (``devices/``; the enrolment authority writes them 0644).

Everything else stays root's: the fleet CA key, the sealing private key (only ``edge-central
open`` needs it), the enrolment service's identity and database, the broker's key.
``grant_service_access`` applies this (idempotent; run again after replacing a key), and
``init_central(service_group=...)`` calls it.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

from edge.central.ops.errors import OpsError
from edge.central.ops.layout import CENTRAL_TOML, CentralLayout

__all__ = ["SERVICE_GROUP", "SERVICE_IDENTITIES_READ", "grant_service_access"]

SERVICE_GROUP = "edge-central"
# service identities whose certificate and key the services' group may read
SERVICE_IDENTITIES_READ = ("central-fleet", "central-receiver")


def _files(layout: CentralLayout) -> list[Path]:
    out = [layout.root / CENTRAL_TOML, layout.path("ca_dir") / "ca.pem",
           layout.path("receipt_private_key")]
    for name in SERVICE_IDENTITIES_READ:
        out.extend(layout.service_files(name))
    return out


def _dirs(layout: CentralLayout) -> list[Path]:
    """Every folder on the way from the central folder to a file the services read."""
    wanted = {layout.root, layout.path("device_certs_dir")}
    for f in [*_files(layout), layout.path("crl")]:
        d = f.parent
        while d != layout.root and layout.root in d.parents:
            wanted.add(d)
            d = d.parent
    return sorted(wanted)


def grant_service_access(layout: CentralLayout, group: str = SERVICE_GROUP) -> list[str]:
    """Give ``group`` read access to what the central services use (see the module
    comment); returns what changed, one line each. Needs root (or the files' owner in
    ``group``)."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise OpsError(f"group {group!r} does not exist: create it (install.sh --central "
                       "makes the edge-central user and group) or name another with "
                       "--service-group", key="central.no_group") from None
    changed: list[str] = []

    def apply(path: Path, mode: int) -> None:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise OpsError(f"{path}: missing from the central folder; it is made by "
                           "'edge-central init'", key="central.missing_file") from None
        if st.st_gid != gid:
            try:
                os.chown(path, -1, gid)
            except PermissionError:
                raise OpsError(f"{path}: cannot give it to group {group} (run as root)",
                               key="central.not_root") from None
            changed.append(f"{path}: group {group}")
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)
            changed.append(f"{path}: mode {mode:04o}")

    for d in _dirs(layout):
        apply(d, 0o750)
    for f in _files(layout):
        apply(f, 0o640)
    crl = layout.path("crl")
    if crl.exists():
        apply(crl, 0o644)   # public anyway; rewritten 0644 by every refresh
    for cert in sorted(layout.path("device_certs_dir").glob("*.crt")):
        if stat.S_IMODE(cert.stat().st_mode) != 0o644:
            os.chmod(cert, 0o644)
            changed.append(f"{cert}: mode 0644")
    return changed
