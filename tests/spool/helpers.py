from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from edge.intake.ingest import Ingestor, Outcome
from edge.seal import generate_sealing_keys
from edge.spool import IntakeReceipt, Spool

KEYS = generate_sealing_keys()
DEVICE_KEY = ec.generate_private_key(ec.SECP256R1())


def make_spool(path: Path, quota: int = 1 << 30, reserve: int = 0) -> Spool:
    return Spool(path, quota_bytes=quota, reserve_bytes=reserve, segment_size=4096)


def make_ingestor(spool: Spool) -> Ingestor:
    return Ingestor(spool=spool, device_id="kec-1", public_key=KEYS.public().for_kem("x25519"),
                    kem="x25519", segment_size=4096, signing_key=DEVICE_KEY)


def put(ing: Ingestor, rid: str, data: bytes, priority: int = 1) -> tuple[Outcome, IntakeReceipt]:
    up = ing.begin(rid, len(data), {"workstation": "ws"}, priority=priority)
    try:
        f = io.BytesIO(data)
        while chunk := f.read(5000):
            up.write(chunk)
        return up.finish()
    except BaseException:
        up.abort()
        raise


@dataclass(frozen=True)
class FakeReceipt:
    """Stands in for a verified custody receipt in spool unit tests (pure lifecycle logic)."""

    recording_id: str
    sealed_sha256: str
    raw: bytes = b'{"receipt":"test"}'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
