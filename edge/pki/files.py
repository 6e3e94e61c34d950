"""PEM files of the fleet PKI: private keys (0600, durable replace) and certificates.

Every key and certificate written here goes through ``edge.durable.atomic_write_bytes``, so a
power cut leaves the old file or the new one, never half a key. Private keys are PKCS#8,
unencrypted unless a passphrase is given (a device key must be readable by its service at
boot; the fleet CA key should be kept offline and encrypted).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.durable import atomic_write_bytes
from edge.pki.errors import PkiFileError

__all__ = [
    "generate_p256_key",
    "load_certificate",
    "load_certificate_pem",
    "load_private_key",
    "private_key_pem",
    "save_certificate",
    "save_private_key",
]

KEY_MODE = 0o600
CERT_MODE = 0o644


def generate_p256_key() -> ec.EllipticCurvePrivateKey:
    """ECDSA P-256: the agreed key type for devices, services, brokers and the fleet CA."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def save_private_key(path: Path, key: ec.EllipticCurvePrivateKey, *,
                     passphrase: bytes | None = None, mode: int = KEY_MODE) -> None:
    """Write the key durably with owner-only permissions from the first byte on disk."""
    atomic_write_bytes(Path(path), private_key_pem(key, passphrase), mode=mode)


def load_private_key(path: Path, passphrase: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PkiFileError(f"cannot read private key {path}: {e.strerror}; check the path and "
                           "that this program may read it") from e
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as e:
        raise PkiFileError(f"{path} is not a usable PEM private key ({e}); a wrong or missing "
                           "passphrase gives this error too") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise PkiFileError(f"{path} holds a {type(key).__name__}, not an ECDSA P-256 key")
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o007:  # group access is a deployment choice (e.g. a broker's key group)
        raise PkiFileError(f"private key {path} is open to every user (mode {mode:o}); "
                           f"run: chmod 600 {path}")
    return key


def save_certificate(path: Path, cert: x509.Certificate, *, mode: int = CERT_MODE) -> None:
    atomic_write_bytes(Path(path), cert.public_bytes(serialization.Encoding.PEM), mode=mode)


def load_certificate_pem(data: bytes, source: str = "certificate") -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise PkiFileError(f"{source} is not a PEM certificate ({e})") from e


def load_certificate(path: Path) -> x509.Certificate:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PkiFileError(f"cannot read certificate {path}: {e.strerror}") from e
    return load_certificate_pem(data, str(path))
