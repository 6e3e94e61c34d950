from __future__ import annotations

import hashlib
import io
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.custody.receipt import VerifiedReceipt, sign_receipt, verify_receipt
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


RECEIPT_KEY = Ed25519PrivateKey.generate()


def receipt_for(spool: Spool, rid: str, sealed_sha256: str | None = None,
                sealed_size: int | None = None) -> VerifiedReceipt:
    """A real central receipt, signed and verified; ``sealed_sha256``/``sealed_size`` let a
    test name other bytes than the spool holds."""
    rec = spool.require(rid)
    digest = bytes.fromhex(sealed_sha256 or rec.sealed_sha256)
    size = rec.sealed_size if sealed_size is None else sealed_size
    raw = sign_receipt(RECEIPT_KEY, device_id="kec-1", recording_id=rid, sealed_sha256=digest,
                       sealed_size=size, received_at_ms=1, receiver_id="central-receiver-t")
    return verify_receipt(RECEIPT_KEY.public_key(), raw, "kec-1", rid, digest)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
