"""Central sealing key files.

The central site generates one key set holding a key pair per KEM (the ML-KEM-768 + X25519
hybrid and plain X25519). Only the public half ever reaches an appliance; config
``[seal] kem`` picks which KEM the appliance seals to. Files are small JSON documents:

    {"format": "edge-sealing-public/1", "kems": {"mlkem768-x25519": "<b64>", "x25519": "<b64>"}}

The hybrid public key is the ML-KEM-768 encapsulation key (1184 bytes) followed by the
X25519 public key (32 bytes); the private key is the ML-KEM seed (64) then X25519 (32).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from edge.durable import atomic_write_bytes
from edge.errors import ConfigError, SealError

__all__ = [
    "HpkePrivateKey",
    "HpkePublicKey",
    "SealingPrivateKeys",
    "SealingPublicKeys",
    "generate_sealing_keys",
    "load_sealing_private_keys",
    "load_sealing_public_keys",
]

PUBLIC_FORMAT = "edge-sealing-public/1"
PRIVATE_FORMAT = "edge-sealing-private/1"

HpkePublicKey = hpke.MLKEM768X25519PublicKey | x25519.X25519PublicKey
HpkePrivateKey = hpke.MLKEM768X25519PrivateKey | x25519.X25519PrivateKey

_MLKEM_PUB = 1184


@dataclass(frozen=True)
class SealingPublicKeys:
    raw: dict[str, bytes]

    def for_kem(self, kem: str) -> HpkePublicKey:
        data = self.raw.get(kem)
        if data is None:
            raise ConfigError(
                f"the central sealing public key file has no {kem!r} key (it has "
                f"{', '.join(sorted(self.raw)) or 'none'}): set [seal] kem to one of those or "
                "install the current central key bundle"
            )
        if kem == "x25519":
            return x25519.X25519PublicKey.from_public_bytes(data)
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM_PUB]),
            x25519.X25519PublicKey.from_public_bytes(data[_MLKEM_PUB:]),
        )

    def to_json(self) -> bytes:
        doc = {"format": PUBLIC_FORMAT,
               "kems": {k: base64.b64encode(v).decode() for k, v in sorted(self.raw.items())}}
        return json.dumps(doc, indent=2).encode() + b"\n"


@dataclass(frozen=True)
class SealingPrivateKeys:
    raw: dict[str, bytes]

    def for_kem(self, kem: str) -> HpkePrivateKey:
        data = self.raw.get(kem)
        if data is None:
            raise SealError(f"no private sealing key for {kem!r} at the central site",
                            key="seal.no_key")
        if kem == "x25519":
            return x25519.X25519PrivateKey.from_private_bytes(data)
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(data[:64]),
            x25519.X25519PrivateKey.from_private_bytes(data[64:]),
        )

    def public(self) -> SealingPublicKeys:
        out: dict[str, bytes] = {}
        for kem, data in self.raw.items():
            if kem == "x25519":
                out[kem] = x25519.X25519PrivateKey.from_private_bytes(data).public_key() \
                    .public_bytes_raw()
            else:
                mk = mlkem.MLKEM768PrivateKey.from_seed_bytes(data[:64])
                xk = x25519.X25519PrivateKey.from_private_bytes(data[64:])
                out[kem] = mk.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
        return SealingPublicKeys(out)

    def to_json(self) -> bytes:
        doc = {"format": PRIVATE_FORMAT,
               "kems": {k: base64.b64encode(v).decode() for k, v in sorted(self.raw.items())}}
        return json.dumps(doc, indent=2).encode() + b"\n"


def generate_sealing_keys() -> SealingPrivateKeys:
    mk = mlkem.MLKEM768PrivateKey.generate()
    xk_hybrid = x25519.X25519PrivateKey.generate()
    xk = x25519.X25519PrivateKey.generate()
    return SealingPrivateKeys({
        "mlkem768-x25519": mk.private_bytes_raw() + xk_hybrid.private_bytes_raw(),
        "x25519": xk.private_bytes_raw(),
    })


def _load(path: Path, fmt: str, what: str) -> dict[str, bytes]:
    try:
        doc: Any = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found: install it from the provisioning bundle "
                          "(edge provision) or point [seal] central_public_key at it") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: {what} unreadable ({e}): reinstall it") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt or not isinstance(doc.get("kems"),
                                                                               dict):
        raise ConfigError(f"{path}: not a {what} (expected format {fmt!r}): reinstall it")
    try:
        return {str(k): base64.b64decode(v, validate=True) for k, v in doc["kems"].items()}
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: {what} has a damaged key: reinstall it") from None


def load_sealing_public_keys(path: Path) -> SealingPublicKeys:
    return SealingPublicKeys(_load(path, PUBLIC_FORMAT, "central sealing public key"))


def load_sealing_private_keys(path: Path) -> SealingPrivateKeys:
    return SealingPrivateKeys(_load(path, PRIVATE_FORMAT, "central sealing private key"))


def write_sealing_keys(keys: SealingPrivateKeys, private_path: Path, public_path: Path) -> None:
    atomic_write_bytes(private_path, keys.to_json(), mode=0o600)
    atomic_write_bytes(public_path, keys.public().to_json(), mode=0o644)
