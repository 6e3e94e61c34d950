"""``edge-central list`` and ``edge-central open``: what the central site holds, and getting a
recording's original bytes out of it for downstream systems.

    edge-central list                         # table: device, recording, sizes, committed
    edge-central list --json --device kec-3171-01 --limit 100   # the 100 newest
    edge-central open nik-3171-000123 --out rec.bin [--device kec-3171-01] [--force]

``open`` checks everything before anything appears at ``--out``: the manifest's signature
(with the device certificate the recording was committed with, chain-checked against the
fleet CA), that the manifest names this device and recording, the sealed file's size and
SHA-256, then decrypts segment by segment (AES-GCM tags, order, truncation) and checks the
plaintext's size and SHA-256. Output goes to a temp file renamed into place only when every
check passed; on any failure nothing is written and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.central.devices import DeviceDirectory, SignerKey, signer_from_pem
from edge.central.settings import CentralSettings, add_arguments, settings_from_args
from edge.central.store import INDEX_FILE, CentralStore, IndexRecord
from edge.custody.errors import ReceiptError
from edge.custody.receipt import parse_receipt
from edge.errors import IntegrityError, LocalError

__all__ = ["list_recordings", "open_recording", "record_summary", "register"]


class NotHeld(LocalError):
    key = "central.not_found"


def register(subparsers: Any) -> None:
    ls = subparsers.add_parser("list", help="recordings held centrally (committed)",
                               description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ls)
    ls.add_argument("--device", help="only this device's recordings")
    ls.add_argument("--json", action="store_true", help="one JSON array, full hashes")
    ls.add_argument("--limit", type=int, help="only the N most recently committed")
    ls.set_defaults(handler=list_recordings)

    op = subparsers.add_parser("open", help="verify and decrypt a recording to a file",
                               description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(op)
    op.add_argument("recording_id")
    op.add_argument("--device", help="the device that sent it (needed if several did)")
    op.add_argument("--out", type=Path, required=True, help="where the original bytes go")
    op.add_argument("--force", action="store_true", help="replace --out if it exists")
    op.set_defaults(handler=open_recording)


def _store(settings: CentralSettings) -> CentralStore:
    if not (settings.data_dir / INDEX_FILE).is_file():
        raise NotHeld(f"{settings.data_dir}: no custody store here (no {INDEX_FILE}); check "
                      "[central] data_dir or --data-dir")
    return CentralStore(settings.data_dir)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def record_summary(rec: IndexRecord) -> dict[str, Any]:
    """What ``list --json`` prints per recording. The manifest fields are as signed by the
    device (checked on arrival); ``receiver_id`` names the instance that committed it."""
    try:
        envelope = json.loads(rec.manifest)
    except ValueError:
        envelope = None
    manifest = envelope.get("manifest") if isinstance(envelope, dict) else None
    if not isinstance(manifest, dict):
        manifest = {}
    try:
        receiver_id: str | None = parse_receipt(rec.receipt or b"").receiver_id
    except ReceiptError:
        receiver_id = None
    return {
        "device_id": rec.device_id,
        "recording_id": rec.recording_id,
        "seq": rec.seq,
        "sealed_size": rec.sealed_size,
        "sealed_sha256": rec.sealed_sha256.hex(),
        "plaintext_size": manifest.get("plaintext_size"),
        "plaintext_sha256": manifest.get("plaintext_sha256"),
        "stored_at_device": manifest.get("stored_at"),
        "committed_at": _iso(rec.committed_at),
        "generation": rec.generation,
        "receiver_id": receiver_id,
    }


def list_recordings(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with _store(settings) as store:
        rows = [record_summary(r) for r in store.committed(device_id=args.device,
                                                           limit=args.limit)]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    head = ("DEVICE", "RECORDING", "SEALED", "PLAINTEXT", "SHA-256 (sealed)", "COMMITTED")
    table = [head] + [(r["device_id"], r["recording_id"], str(r["sealed_size"]),
                       str(r["plaintext_size"] if r["plaintext_size"] is not None else "?"),
                       r["sealed_sha256"][:16] + "…", r["committed_at"] or "")
                      for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows)} recording(s)")
    return 0


def _signer(settings: CentralSettings, rec: IndexRecord) -> SignerKey:
    from edge.pki import load_certificate

    settings.require("ca")
    assert settings.ca is not None
    ca = load_certificate(settings.ca)
    if rec.signer_cert is not None:
        # As the certificate stood when the recording arrived: a later expiry, renewal or
        # revocation does not undo a receipt already given.
        at = datetime.fromtimestamp(rec.committed_at or 0.0, UTC)
        return signer_from_pem(ca, rec.signer_cert, rec.device_id, at=at)
    settings.require("device_certs_dir")
    assert settings.device_certs_dir is not None
    return DeviceDirectory(settings.device_certs_dir, ca).signer(rec.device_id)


def open_recording(args: argparse.Namespace) -> int:
    from edge.central.opener import open_sealed_to_path
    from edge.seal.keys import load_sealing_private_keys
    from edge.seal.manifest import verify_manifest

    settings = settings_from_args(args)
    settings.require("sealing_key", "ca")
    assert settings.sealing_key is not None
    out: Path = args.out
    if out.exists() and not args.force:
        raise LocalError(f"{out} exists: choose another --out or pass --force",
                         key="central.out_exists")
    with _store(settings) as store:
        recs = store.committed(device_id=args.device, recording_id=args.recording_id)
        if not recs:
            who = f" from device {args.device}" if args.device else ""
            raise NotHeld(f"no committed recording {args.recording_id!r}{who}: see "
                          "'edge-central list'")
        if len(recs) > 1:
            raise NotHeld(f"recording {args.recording_id!r} is held for several devices "
                          f"({', '.join(r.device_id for r in recs)}): pass --device",
                          key="central.ambiguous")
        rec = recs[0]
        sealed = store.final_path(rec.device_id, rec.recording_id)
        beside = store.manifest_path(rec.device_id, rec.recording_id)
    if beside.exists() and beside.read_bytes() != rec.manifest:
        raise IntegrityError(f"{beside} differs from the manifest in the index: the store "
                             "was altered; restore it from backup", key="central.store_altered")
    if not sealed.is_file():
        raise IntegrityError(f"{sealed} is missing although the index says it was committed: "
                             "restore it from backup", key="central.store_altered")
    keys = load_sealing_private_keys(settings.sealing_key)
    signer = _signer(settings, rec)
    m = verify_manifest(rec.manifest, signer.public_key)
    if (m.device_id, m.recording_id, m.sealed_sha256) != (rec.device_id, rec.recording_id,
                                                          rec.sealed_sha256.hex()):
        raise IntegrityError("the manifest does not name this device, recording and sealed "
                             "file", key="seal.manifest_mismatch")
    manifest = open_sealed_to_path(sealed, rec.manifest, signer.public_key, keys, out)
    print(f"{rec.device_id}/{rec.recording_id}: {manifest.plaintext_size} bytes, SHA-256 "
          f"{manifest.plaintext_sha256} verified → {out}")
    return 0
