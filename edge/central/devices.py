"""Which key signs a device's manifests: its issued certificate, checked against the fleet CA.

Place in the data flow: the receiver checks every offered manifest with the certificate of
the device named by the MQTT topic (the broker ties the topic to the TLS identity), and
``edge-central open`` checks it again before decrypting. The provisioning tools write each
issued device certificate to ``<device_certs_dir>/<device id>.crt`` (PEM); a certificate is
only trusted if the fleet CA issued it to that device id as a device identity, it is within
its validity, and (when a CRL is configured) it is not revoked.

Files are re-read when they change (mtime, size, inode), so a renewal or a new CRL needs no
restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from edge.errors import ConfigError, IntegrityError
from edge.pki import (
    CertificateRejected,
    PkiFileError,
    load_certificate,
    load_certificate_pem,
    verify_device_certificate,
)

__all__ = ["DeviceDirectory", "DeviceRejected", "SignerKey", "signer_from_pem"]

log = logging.getLogger(__name__)

_Stamp = tuple[int, int, int]


class DeviceRejected(IntegrityError):
    """No trustworthy certificate for this device: its manifests cannot be accepted.

    Keys: ``manifest.unknown_device`` (no certificate issued here), ``manifest.device_revoked``,
    ``manifest.bad_certificate`` (not from the fleet CA, expired, another device's).
    """

    key = "manifest.bad_certificate"


@dataclass(frozen=True)
class SignerKey:
    public_key: ec.EllipticCurvePublicKey
    cert_pem: bytes


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def signer_from_pem(ca_cert: x509.Certificate, pem: bytes, device_id: str, *,
                    at: datetime | None = None) -> SignerKey:
    """Check a stored signer certificate (e.g. the one a recording was committed with) as it
    stood at ``at``; raises ``DeviceRejected``."""
    try:
        cert = load_certificate_pem(pem, f"certificate of {device_id}")
        key = verify_device_certificate(ca_cert, cert, device_id, now=at)
    except (PkiFileError, CertificateRejected) as e:
        raise DeviceRejected(f"device {device_id}: {e.message}") from None
    return SignerKey(key, pem)


class DeviceDirectory:
    """``<certs_dir>/<device_id>.crt`` checked against the fleet CA (and CRL). Thread-safe."""

    def __init__(self, certs_dir: Path, ca_cert: x509.Certificate, crl_path: Path | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.certs_dir = Path(certs_dir)
        if not self.certs_dir.is_dir():
            raise ConfigError(f"{self.certs_dir}: device certificate folder not found: create "
                              "it (the provisioning tools write <device id>.crt there) or set "
                              "[central] device_certs_dir")
        self.ca_cert = ca_cert
        self.crl_path = crl_path
        self._clock = clock
        self._lock = threading.Lock()
        self._certs: dict[str, tuple[_Stamp, x509.Certificate, bytes]] = {}
        self._crl: tuple[_Stamp, x509.CertificateRevocationList] | None = None
        if crl_path is not None:
            self._load_crl(strict=True)

    def signer(self, device_id: str) -> SignerKey:
        """The public key to verify ``device_id``'s manifests with; ``DeviceRejected``."""
        path = self.certs_dir / f"{device_id}.crt"
        with self._lock:
            stamp = _stamp(path)
            if stamp is None:
                self._certs.pop(device_id, None)
                raise DeviceRejected(
                    f"no certificate for device {device_id!r} in {self.certs_dir}: it was "
                    "never provisioned here (or its file was removed)",
                    key="manifest.unknown_device")
            cached = self._certs.get(device_id)
            if cached is None or cached[0] != stamp:
                try:
                    cert = load_certificate(path)
                except PkiFileError as e:
                    raise DeviceRejected(f"device {device_id}: {e.message}") from None
                cached = (stamp, cert, cert.public_bytes(Encoding.PEM))
                self._certs[device_id] = cached
            _, cert, pem = cached
            crl = self._load_crl(strict=False) if self.crl_path is not None else None
        if crl is not None and crl.get_revoked_certificate_by_serial_number(
                cert.serial_number) is not None:
            raise DeviceRejected(f"the certificate of device {device_id!r} (serial "
                                 f"{cert.serial_number:x}) is revoked",
                                 key="manifest.device_revoked")
        try:
            key = verify_device_certificate(self.ca_cert, cert, device_id,
                                            now=datetime.fromtimestamp(self._clock(), UTC))
        except CertificateRejected as e:
            raise DeviceRejected(f"device {device_id}: {e.message}") from None
        return SignerKey(key, pem)

    def _load_crl(self, *, strict: bool) -> x509.CertificateRevocationList | None:
        """The current CRL (re-read when the file changes). A CRL that is missing, damaged
        or not signed by the fleet CA stops the start (``strict``); later, the last good one
        stays in use and the problem is logged."""
        assert self.crl_path is not None
        stamp = _stamp(self.crl_path)
        if self._crl is not None and self._crl[0] == stamp:
            return self._crl[1]
        try:
            crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
            ca_key = self.ca_cert.public_key()
            if (crl.issuer != self.ca_cert.subject
                    or not isinstance(ca_key, ec.EllipticCurvePublicKey)
                    or not crl.is_signature_valid(ca_key)):
                raise ValueError("not signed by the fleet CA")
        except (OSError, ValueError) as e:
            msg = f"{self.crl_path}: CRL unusable ({e})"
            if strict:
                raise ConfigError(msg + ": fix [central] crl or refresh the CRL") from None
            log.error("%s; still using the previous one", msg)
            return self._crl[1] if self._crl is not None else None
        if stamp is not None:
            self._crl = (stamp, crl)
        next_update = crl.next_update_utc
        if next_update is not None and next_update.timestamp() < self._clock():
            log.warning("%s: CRL expired on %s; revocations made since are not known here",
                        self.crl_path, next_update.isoformat())
        return crl
