"""The self-test's end-to-end check: one small synthetic recording through the whole custody
chain — sealed into the spool as the intake would, forwarded, receipted by the central site,
the receipt verified and the local copy removed.

If the forwarder service is running, it carries the test recording like any other (urgent
class, so it passes any backlog); otherwise this call runs a forwarder itself until the
receipt arrives. Either way the proof is the same: a verified central receipt.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from edge.config import Config
from edge.custody.receipt import verify_receipt
from edge.errors import RemoteError, SpoolError
from edge.forward.config import load_receipt_key, parse_forward_config
from edge.forward.engine import Forwarder
from edge.intake.ingest import Ingestor
from edge.seal import load_device_signing_key, load_sealing_public_keys
from edge.spool import Spool, State

__all__ = ["ReceiptInfo", "send_test_recording"]


@dataclass(frozen=True)
class ReceiptInfo:
    recording_id: str
    receiver_id: str
    received_at_ms: int
    seconds: float
    via: str  # "service" (the running forwarder) or "self-test forwarder"


def _open(cfg: Config) -> Spool:
    return Spool(cfg.spool.dir, quota_bytes=cfg.spool.quota_bytes,
                 reserve_bytes=cfg.spool.reserve_bytes, segment_size=cfg.seal.segment_size)


def send_test_recording(cfg: Config, timeout: float = 90.0) -> ReceiptInfo:
    fcfg = parse_forward_config(cfg)
    receipt_key = load_receipt_key(fcfg.mqtt.receipt_public_key)
    spool = _open(cfg)
    t0 = time.monotonic()
    rid = f"selftest-{int(time.time())}-{os.urandom(3).hex()}"
    try:
        ing = Ingestor(spool=spool, device_id=cfg.device.id,
                       public_key=load_sealing_public_keys(cfg.seal.central_public_key)
                       .for_kem(cfg.seal.kem),
                       kem=cfg.seal.kem, segment_size=cfg.seal.segment_size,
                       signing_key=load_device_signing_key(cfg.identity.key))
        body = os.urandom(64 * 1024)
        up = ing.begin(rid, len(body), {"workstation": "selftest", "operator": "technician",
                                        "content_type": "application/x-edge-selftest"},
                       priority=0)
        try:
            up.write(body)
            up.finish()
        except BaseException:
            up.abort()
            raise
        try:
            spool.acquire_role("forward")
            own = True
        except SpoolError:
            own = False  # the forwarder service holds the spool: it will carry it
        stop = threading.Event()
        runner: threading.Thread | None = None
        if own:
            fwd = Forwarder(cfg, fcfg, spool)
            runner = threading.Thread(target=fwd.run, args=(stop,), daemon=True)
            runner.start()
        try:
            deadline = t0 + timeout
            while time.monotonic() < deadline:
                rec = spool.require(rid)
                if rec.state in (State.RECEIPTED, State.PURGED) and rec.receipt:
                    v = verify_receipt(receipt_key, rec.receipt, cfg.device.id, rid,
                                       bytes.fromhex(rec.sealed_sha256))
                    return ReceiptInfo(rid, v.fields.receiver_id, v.fields.received_at_ms,
                                       time.monotonic() - t0,
                                       "self-test forwarder" if own else "service")
                if rec.state is State.LOST:
                    raise RemoteError(f"test recording {rid} was lost: see spool events",
                                      key="selftest.lost")
                time.sleep(0.2)
            raise RemoteError(
                f"no custody receipt for the test recording within {timeout:.0f} s: check the "
                "uplink and the broker connection (edge uplink status, journalctl -u "
                "edge-forward)", key="selftest.no_receipt")
        finally:
            stop.set()
            if runner is not None:
                runner.join(timeout=15)
    finally:
        spool.close()
