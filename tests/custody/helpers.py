"""In-memory world for the custody machines (like h11's tests/helpers.py): no broker, no disk.

* ``MemoryStore`` implements the receiver's ``CustodyStore`` contract (generation CAS, held
  bytes never rewritten, first commit wins) and counts commits, so a test can prove
  "stored exactly once".
* ``Central`` is a receiver adapter: it runs store actions against a shared MemoryStore,
  verifies manifests (test format below) and reassembled files, and keeps action *results*
  in a queue so a test can deliver them late or lose them in a crash.
* ``Device`` is a forwarder adapter over a dict "spool"; it deletes a recording only on
  ``Receipted`` and checks that receipt independently.
* ``Link`` holds messages in flight each way; tests deliver, drop, duplicate or reorder them.

Test manifest format (the real one belongs to edge.seal): canonical JSON claims, a newline,
then the hex DER ECDSA-P256/SHA-256 signature by the device key.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.custody.messages import Alert, Chunk, Publish, decode_up
from edge.custody.ranges import RangeSet
from edge.custody.receipt import verify_receipt
from edge.custody.receiver import (
    CheckManifest,
    CommitRecording,
    CustodyStore,
    DiscardGeneration,
    LoadRecord,
    ManifestClaims,
    ManifestRejected,
    OfferRecord,
    Receiver,
    ReceiverConfig,
    ReceiverOutput,
    SaveOffer,
    StoreChunk,
    StoreView,
    VerifyRecording,
    VerifyResult,
    run_store_action,
)
from edge.custody.sender import (
    GaveUp,
    PublishChunk,
    Receipted,
    Recording,
    Sender,
    SenderConfig,
    SenderOutput,
    VerifyLocal,
)

RECEIPT_KEY = Ed25519PrivateKey.generate()
OTHER_RECEIPT_KEY = Ed25519PrivateKey.generate()
_DEVICE_KEYS: dict[str, ec.EllipticCurvePrivateKey] = {}


def device_key(device_id: str) -> ec.EllipticCurvePrivateKey:
    if device_id not in _DEVICE_KEYS:
        _DEVICE_KEYS[device_id] = ec.generate_private_key(ec.SECP256R1())
    return _DEVICE_KEYS[device_id]


def make_manifest(device_id: str, recording_id: str, data: bytes,
                  *, signer: str | None = None) -> bytes:
    claims = {"device": device_id, "recording": recording_id,
              "sealed_sha256": hashlib.sha256(data).hexdigest(), "sealed_size": len(data)}
    body = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    sig = device_key(signer or device_id).sign(body, ec.ECDSA(hashes.SHA256()))
    return body + b"\n" + sig.hex().encode()


def check_manifest(device_id: str, manifest: bytes) -> ManifestClaims | ManifestRejected:
    """What a real adapter does with the device certificate of the *topic's* device."""
    body, _, sig = manifest.rpartition(b"\n")
    if device_id not in _DEVICE_KEYS:
        return ManifestRejected("manifest.unknown_device", f"no certificate for {device_id}")
    try:
        _DEVICE_KEYS[device_id].public_key().verify(bytes.fromhex(sig.decode()), body,
                                                    ec.ECDSA(hashes.SHA256()))
        c = json.loads(body)
        return ManifestClaims(c["device"], c["recording"], c["sealed_size"],
                              bytes.fromhex(c["sealed_sha256"]))
    except (InvalidSignature, ValueError, KeyError, UnicodeDecodeError):
        return ManifestRejected("manifest.bad_signature",
                                f"manifest does not verify with {device_id}'s certificate")


def recording(device_id: str, recording_id: str, data: bytes, seq: int = 0,
              priority: int = 1) -> Recording:
    return Recording(recording_id, seq, priority, len(data), hashlib.sha256(data).digest(),
                     make_manifest(device_id, recording_id, data))


# --------------------------------------------------------------------------- store


@dataclass
class _Stored:
    offer: OfferRecord | None = None
    generation: int = 0
    buf: bytearray = field(default_factory=bytearray)
    held: RangeSet = field(default_factory=RangeSet)
    receipt: bytes | None = None
    final: bytes | None = None


class MemoryStore:
    """The durable store shared by all receiver instances; survives their restarts."""

    def __init__(self) -> None:
        self.recs: dict[tuple[str, str], _Stored] = {}
        self.commits: dict[tuple[str, str], int] = {}
        self.bytes_written = 0

    def _get(self, d: str, r: str) -> _Stored:
        return self.recs.setdefault((d, r), _Stored())

    def _view(self, d: str, r: str) -> StoreView:
        s = self._get(d, r)
        return StoreView(d, r, s.offer, s.generation, s.held, s.receipt)

    def load(self, device_id: str, recording_id: str) -> StoreView:
        return self._view(device_id, recording_id)

    def save_offer(self, device_id: str, recording_id: str, offer: OfferRecord) -> StoreView:
        s = self._get(device_id, recording_id)
        if s.offer is None:
            s.offer = offer
            s.buf = bytearray(offer.sealed_size)
        return self._view(device_id, recording_id)

    def put_chunk(self, device_id: str, recording_id: str, generation: int, offset: int,
                  data: bytes) -> StoreView:
        s = self._get(device_id, recording_id)
        if s.offer is None or s.receipt is not None or generation != s.generation:
            return self._view(device_id, recording_id)
        end = offset + len(data)
        assert end <= s.offer.sealed_size, "receiver asked to store past the offered size"
        for gs, ge in s.held.gaps(s.offer.sealed_size):   # never rewrite held bytes
            lo, hi = max(gs, offset), min(ge, end)
            if lo < hi:
                s.buf[lo:hi] = data[lo - offset:hi - offset]
                self.bytes_written += hi - lo
        s.held = s.held.add(offset, end)
        return self._view(device_id, recording_id)

    def commit(self, device_id: str, recording_id: str, generation: int,
               receipt: bytes) -> StoreView:
        s = self._get(device_id, recording_id)
        if (s.receipt is None and s.offer is not None and generation == s.generation
                and s.held.complete(s.offer.sealed_size)):
            s.final = bytes(s.buf)
            s.receipt = receipt
            key = (device_id, recording_id)
            self.commits[key] = self.commits.get(key, 0) + 1
        return self._view(device_id, recording_id)

    def discard(self, device_id: str, recording_id: str, generation: int) -> StoreView:
        s = self._get(device_id, recording_id)
        if s.receipt is None and s.offer is not None and generation == s.generation:
            s.generation += 1
            s.held = RangeSet()
            s.buf = bytearray(s.offer.sealed_size)
        return self._view(device_id, recording_id)

    def assembled(self, device_id: str, recording_id: str, generation: int) -> bytes | None:
        s = self._get(device_id, recording_id)
        return bytes(s.buf) if s.generation == generation else None


_store_check: CustodyStore = MemoryStore()   # mypy: MemoryStore satisfies the Protocol


# --------------------------------------------------------------------------- adapters

Message = tuple[str, bytes]


@dataclass
class Link:
    """Messages in flight: ``up`` device → central, ``down`` central → device."""

    up: list[Message] = field(default_factory=list)
    down: list[Message] = field(default_factory=list)


class Central:
    """A receiver instance plus its adapter; ``results`` are its not-yet-reported answers."""

    def __init__(self, store: MemoryStore, link: Link, config: ReceiverConfig,
                 key: Ed25519PrivateKey = RECEIPT_KEY, *, sync: bool = True) -> None:
        self.store = store
        self.link = link
        self.config = config
        self.key = key
        self.sync = sync
        self.now = 0.0
        self.machine = Receiver(config, key)
        self.results: list[Callable[[], list[ReceiverOutput]]] = []
        self.alerts: list[Alert] = []
        self.tamper_verify: Callable[[VerifyRecording], VerifyResult | None] | None = None

    def restart(self) -> None:
        """Crash: in-memory state and actions not yet carried out are lost; the store stays."""
        self.machine = Receiver(self.config, self.key)
        self.results.clear()

    def receive(self, topic: str, payload: bytes, now: float) -> None:
        self.now = max(self.now, now)
        self.handle(self.machine.receive(topic, payload, self.now))

    def tick(self, now: float) -> None:
        self.now = max(self.now, now)
        self.handle(self.machine.tick(self.now))

    def run_result(self, index: int = 0, *, report: bool = True) -> None:
        """Carry out one queued action and report it (out of order if ``index`` > 0).

        ``report=False``: the action took effect (the chunk is on disk) but the process died
        before the machine heard of it.
        """
        fn = self.results.pop(index % len(self.results))
        outputs = fn()
        if report:
            self.handle(outputs)

    def handle(self, outputs: list[ReceiverOutput]) -> None:
        for out in outputs:
            if isinstance(out, Publish):
                self.link.down.append((out.topic, out.payload))
            elif isinstance(out, Alert):
                self.alerts.append(out)
            else:
                self._later(self._job(out))

    def _job(self, out: ReceiverOutput) -> Callable[[], list[ReceiverOutput]]:
        """The adapter's work for one action; its effect happens when the job runs."""
        machine = self.machine
        if isinstance(out, (LoadRecord, SaveOffer, StoreChunk, CommitRecording,
                            DiscardGeneration)):
            return lambda: machine.store_result(out, run_store_action(self.store, out),
                                                self.now)
        if isinstance(out, CheckManifest):
            return lambda: machine.manifest_checked(
                out, check_manifest(out.device_id, out.manifest), self.now)
        if isinstance(out, VerifyRecording):
            return lambda: machine.verified(out, self._verify(out), self.now)
        raise AssertionError(f"unexpected output {out!r}")

    def _later(self, job: Callable[[], list[ReceiverOutput]]) -> None:
        if self.sync:
            self.handle(job())
        else:
            self.results.append(job)

    def _verify(self, a: VerifyRecording) -> VerifyResult:
        if self.tamper_verify is not None:
            forced = self.tamper_verify(a)
            if forced is not None:
                return forced
        claims = check_manifest(a.device_id, a.manifest)
        if isinstance(claims, ManifestRejected):
            return VerifyResult(False, claims.key, claims.detail)
        data = self.store.assembled(a.device_id, a.recording_id, a.generation)
        if data is None or len(data) != a.sealed_size:
            return VerifyResult(False, "hash_mismatch", "generation moved on")
        if hashlib.sha256(data).digest() != a.sealed_sha256:
            return VerifyResult(False, "hash_mismatch", "SHA-256 differs")
        return VerifyResult(True)


class Device:
    """A forwarder adapter over an in-memory spool ``{recording_id: (Recording, bytes)}``."""

    def __init__(self, device_id: str, link: Link, config: SenderConfig,
                 store: MemoryStore | None = None, *, seed: int = 0) -> None:
        self.device_id = device_id
        self.link = link
        self.config = config
        self.store = store
        self.seed = seed
        self.spool: dict[str, tuple[Recording, bytes]] = {}
        self.receipted: dict[str, bytes] = {}
        self.gave_up: list[GaveUp] = []
        self.alerts: list[Alert] = []
        self.machine = self._new_machine()

    def _new_machine(self) -> Sender:
        self.seed += 1
        return Sender(self.device_id, RECEIPT_KEY.public_key(), self.config,
                      rng=random.Random(self.seed))

    def add(self, recording_id: str, data: bytes, now: float, *, seq: int = 0,
            priority: int = 1) -> None:
        rec = recording(self.device_id, recording_id, data, seq, priority)
        self.spool[recording_id] = (rec, data)
        self.handle(self.machine.enqueue(rec, now), now)

    def start(self, now: float) -> None:
        self.handle(self.machine.link_up(now), now)

    def restart(self, now: float) -> None:
        """Power cut: only the spool survives; everything in it is enqueued again."""
        self.machine = self._new_machine()
        for rec, _ in sorted(self.spool.values(), key=lambda x: x[0].seq):
            self.handle(self.machine.enqueue(rec, now), now)
        self.start(now)

    def receive(self, topic: str, payload: bytes, now: float) -> None:
        self.handle(self.machine.receive(topic, payload, now), now)

    def tick(self, now: float) -> None:
        self.handle(self.machine.tick(now), now)

    def handle(self, outputs: list[SenderOutput], now: float) -> None:
        for out in outputs:
            if isinstance(out, Publish):
                self.link.up.append((out.topic, out.payload))
            elif isinstance(out, PublishChunk):
                _, data = self.spool[out.recording_id]
                self.link.up.append((out.topic, out.frame(data[out.offset:out.offset
                                                               + out.length])))
            elif isinstance(out, Receipted):
                self._receipted(out)
            elif isinstance(out, VerifyLocal):
                _rec, data = self.spool[out.recording_id]
                ok = hashlib.sha256(data).digest() == out.sealed_sha256
                self.handle(self.machine.local_verified(out.recording_id, ok, now), now)
            elif isinstance(out, GaveUp):
                self.gave_up.append(out)
            elif isinstance(out, Alert):
                self.alerts.append(out)
            else:
                raise AssertionError(f"unexpected output {out!r}")

    def _receipted(self, out: Receipted) -> None:
        rec, data = self.spool[out.recording_id]
        # Independent check: the receipt is genuine and names exactly this recording...
        verify_receipt(RECEIPT_KEY.public_key(), out.receipt_bytes, self.device_id,
                       rec.recording_id, hashlib.sha256(data).digest(),
                       expect_sealed_size=len(data))
        # ...and the central store really holds the right bytes, committed.
        if self.store is not None:
            s = self.store.recs[(self.device_id, rec.recording_id)]
            assert s.receipt == out.receipt_bytes and s.final == data
        self.receipted[out.recording_id] = out.receipt_bytes
        del self.spool[out.recording_id]


def chunk_messages(link: Link) -> list[tuple[str, int, int]]:
    """``(recording_id, offset, length)`` of chunk frames waiting on the uplink."""
    out = []
    for t, p in link.up:
        _, msg = decode_up(t, p)
        if isinstance(msg, Chunk):
            out.append((msg.recording_id, msg.offset, len(msg.data)))
    return out
