"""Central side of the custody chain: accept offers and chunks, say what is held, issue receipts.

Place in the data flow: devices → broker → ``$share/central/edge/+/up/custody/#`` → receiver
adapter → **Receiver** → (durable chunk store, verification, receipts) → broker → device. The
Receiver does no I/O: it returns actions (store this, verify that, publish this) and the
adapter reports each action's result back. See docs/custody-protocol.md §8.

Theory of operation
-------------------
The durable store is the truth; this machine only caches what the store last reported about a
recording (a ``StoreView``: accepted offer, generation, byte ranges held, receipt) and can be
thrown away at any time. Several receivers may share one store and see messages of the same
recording in any order, so every store operation is a compare-and-set on the generation and
returns a fresh view, and every Offer (which is also the sender's query) reloads the view from
the store before it is answered. Per recording the machine is in one phase:

    (new) ─▶ LOADING ─view─▶ IDLE ─offer, none stored─▶ CHECKING ─claims OK─▶ SAVING ─▶ IDLE
                               │                              └─ claims bad ─▶ Reject, IDLE
                               ├─ every byte held ─▶ VERIFYING ─ok─▶ COMMITTING ─▶ IDLE (+receipt)
                               │                        └─ hash mismatch ─▶ DISCARDING ─▶ IDLE
                               └─ offer (query) ─▶ LOADING

* Messages that need a view the machine does not have yet are buffered (bounded by
  ``max_pending_bytes``; past that, chunks are dropped and the sender's timers resend them).
* **Chunks** are checked against the accepted offer (range inside the sealed size, current
  generation, CRC already checked by the decoder) and handed to the store with
  ``StoreChunk``; bytes already held are not written again. After the store reports the chunk
  durable, a State (the end-to-end ack) goes to the device.
* **Completion.** When a view shows every byte held, the adapter verifies the reassembled file
  (SHA-256 and size against the offer, manifest signature against the device certificate).
  On success the machine signs a receipt, the store commits file and receipt atomically (first
  commit wins; a second receiver's commit returns the first receipt), and only then is the
  receipt published. A duplicate offer of a stored recording just gets the stored receipt.
* **Tampering.** A chunk with a bad CRC is dropped by the decoder. Bytes that pass the CRC but
  make the final hash fail are thrown away whole (``DiscardGeneration`` bumps the generation);
  the State with the new generation makes the sender send everything again.
* **Identity.** The topic names the sending device (the broker's ACL ties it to the TLS
  certificate). The manifest's claims (device, recording, size, hash), checked by the adapter
  against that device's certificate, must match the topic and the offer, or the offer is
  rejected — a device cannot deliver a recording in another device's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.custody.errors import MalformedMessage
from edge.custody.messages import (
    DOWN,
    KIND_RECEIPT,
    KIND_REJECT,
    KIND_STATE,
    PHASE_RECEIVING,
    PHASE_UNKNOWN,
    PHASE_VERIFYING,
    Alert,
    Chunk,
    Offer,
    Publish,
    Reject,
    State,
    decode_up,
    encode_reject,
    encode_state,
    topic,
)
from edge.custody.ranges import RangeSet
from edge.custody.receipt import sign_receipt

__all__ = [
    "CHECKING",
    "COMMITTING",
    "DISCARDING",
    "IDLE",
    "LOADING",
    "SAVING",
    "VERIFYING",
    "CheckManifest",
    "CommitRecording",
    "CustodyStore",
    "DiscardGeneration",
    "LoadRecord",
    "ManifestClaims",
    "ManifestRejected",
    "OfferRecord",
    "Receiver",
    "ReceiverConfig",
    "ReceiverOutput",
    "SaveOffer",
    "StoreAction",
    "StoreChunk",
    "StoreView",
    "VerifyRecording",
    "VerifyResult",
    "run_store_action",
]

LOADING = "loading"
IDLE = "idle"
CHECKING = "checking"
SAVING = "saving"
VERIFYING = "verifying"
COMMITTING = "committing"
DISCARDING = "discarding"

# Every phase may also fall back to LOADING when its operation's answer never comes.
_TRANSITIONS: dict[str, frozenset[str]] = {
    LOADING: frozenset({IDLE, LOADING}),
    IDLE: frozenset({LOADING, CHECKING, VERIFYING}),
    CHECKING: frozenset({SAVING, IDLE, LOADING}),
    SAVING: frozenset({IDLE, LOADING}),
    VERIFYING: frozenset({COMMITTING, DISCARDING, IDLE, LOADING}),
    COMMITTING: frozenset({IDLE, LOADING}),
    DISCARDING: frozenset({IDLE, LOADING}),
}

_RECEIVER_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class ReceiverConfig:
    receiver_id: str                          # goes into every receipt (which instance)
    max_chunk_data: int = 1024 * 1024         # largest chunk accepted (devices send <=128 KiB)
    max_sealed_size: int = 2 * 1024**3
    max_manifest: int = 64 * 1024
    max_state_ranges: int = 512               # ranges reported per State (an honest prefix)
    max_pending_bytes: int = 64 * 1024 * 1024 # chunks buffered while a view is being loaded
    idle_forget_s: float = 600.0              # drop cached views unused this long
    op_timeout_s: float = 120.0               # an action unanswered this long → reload

    def __post_init__(self) -> None:
        if not _RECEIVER_ID_RE.fullmatch(self.receiver_id):
            raise ValueError(f"receiver_id {self.receiver_id!r}: use 1-64 of [A-Za-z0-9._-]")
        if min(self.max_chunk_data, self.max_sealed_size, self.max_manifest,
               self.max_state_ranges, self.op_timeout_s, self.idle_forget_s) <= 0:
            raise ValueError("receiver limits must be positive")


# --------------------------------------------------------------------------- store contract


@dataclass(frozen=True)
class OfferRecord:
    """The accepted offer, kept by the store with the recording."""

    seq: int
    priority: int
    sealed_size: int
    sealed_sha256: bytes
    manifest: bytes = field(repr=False)


@dataclass(frozen=True)
class StoreView:
    """What the durable store holds of one recording. Generations never go down; within a
    generation ``held`` only grows and held bytes are never rewritten."""

    device_id: str
    recording_id: str
    offer: OfferRecord | None = None
    generation: int = 0
    held: RangeSet = field(default_factory=RangeSet)
    receipt: bytes | None = field(default=None, repr=False)


class CustodyStore(Protocol):
    """The durable store the receiver adapter must provide (shared by all receivers).

    Every method is atomic with respect to the others (e.g. one SQLite transaction plus
    file operations ordered temp → fsync → rename → fsync dir) and returns the view *after*
    the operation, whether or not it changed anything.
    """

    def load(self, device_id: str, recording_id: str) -> StoreView:
        """Current view; an unknown recording is ``StoreView(device_id, recording_id)``."""
        ...

    def save_offer(self, device_id: str, recording_id: str, offer: OfferRecord) -> StoreView:
        """Record the offer if none is recorded yet (first writer wins)."""
        ...

    def put_chunk(self, device_id: str, recording_id: str, generation: int, offset: int,
                  data: bytes) -> StoreView:
        """If ``generation`` is current and the recording is not committed: write the bytes of
        ``[offset, offset+len(data))`` not held yet, make them durable (fsync), then add the
        range to ``held``. Otherwise change nothing."""
        ...

    def commit(self, device_id: str, recording_id: str, generation: int,
               receipt: bytes) -> StoreView:
        """If not committed, ``generation`` is current and every byte is held: make the
        reassembled file final and store ``receipt`` with it, atomically. Otherwise nothing
        (a committed recording keeps its first receipt)."""
        ...

    def discard(self, device_id: str, recording_id: str, generation: int) -> StoreView:
        """If ``generation`` is current and not committed: delete its bytes and move to
        ``generation + 1`` with nothing held (the offer stays)."""
        ...


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class LoadRecord:
    op: int
    device_id: str
    recording_id: str


@dataclass(frozen=True)
class SaveOffer:
    op: int
    device_id: str
    recording_id: str
    offer: OfferRecord


@dataclass(frozen=True)
class StoreChunk:
    op: int
    device_id: str
    recording_id: str
    generation: int
    offset: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class CommitRecording:
    op: int
    device_id: str
    recording_id: str
    generation: int
    receipt: bytes = field(repr=False)


@dataclass(frozen=True)
class DiscardGeneration:
    op: int
    device_id: str
    recording_id: str
    generation: int


StoreAction = LoadRecord | SaveOffer | StoreChunk | CommitRecording | DiscardGeneration


@dataclass(frozen=True)
class CheckManifest:
    """Verify ``manifest``'s signature with the certificate of ``device_id`` (the topic's
    device) and report its claims with ``Receiver.manifest_checked``."""

    op: int
    device_id: str
    recording_id: str
    manifest: bytes = field(repr=False)


@dataclass(frozen=True)
class ManifestClaims:
    """What a validly signed manifest says about the sealed file."""

    device_id: str
    recording_id: str
    sealed_size: int
    sealed_sha256: bytes


@dataclass(frozen=True)
class ManifestRejected:
    key: str       # e.g. "manifest.bad_signature", "manifest.unknown_device"
    detail: str


@dataclass(frozen=True)
class VerifyRecording:
    """Hash the reassembled file of this generation (SHA-256 and size must match) and verify
    the manifest signature again; report with ``Receiver.verified``."""

    op: int
    device_id: str
    recording_id: str
    generation: int
    sealed_size: int
    sealed_sha256: bytes
    manifest: bytes = field(repr=False)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    key: str = ""       # "hash_mismatch" → data discarded and re-requested; else rejected
    detail: str = ""


ReceiverOutput = StoreAction | CheckManifest | VerifyRecording | Publish | Alert


def run_store_action(store: CustodyStore, action: StoreAction) -> StoreView:
    """The whole store side of an adapter: carry out one action, return the view."""
    d, r = action.device_id, action.recording_id
    match action:
        case LoadRecord():
            return store.load(d, r)
        case SaveOffer():
            return store.save_offer(d, r, action.offer)
        case StoreChunk():
            return store.put_chunk(d, r, action.generation, action.offset, action.data)
        case CommitRecording():
            return store.commit(d, r, action.generation, action.receipt)
        case DiscardGeneration():
            return store.discard(d, r, action.generation)
    raise TypeError(f"not a store action: {action!r}")


# --------------------------------------------------------------------------- machine

_Key = tuple[str, str]


@dataclass
class _Pending:
    msg: Offer | Chunk
    size: int


@dataclass
class _Rec:
    device_id: str
    recording_id: str
    phase: str = LOADING
    op: int = 0                          # the outstanding phase operation
    op_started: float = 0.0
    view: StoreView | None = None
    pending: list[_Pending] = field(default_factory=list)
    checking: Offer | None = None        # the offer whose manifest is being checked
    refused: bool = False                # final check refused it: verify again on a new offer
    last_used: float = 0.0


class Receiver:
    """One receiver instance. Not thread-safe: call it from one loop."""

    def __init__(self, config: ReceiverConfig, receipt_key: Ed25519PrivateKey) -> None:
        self.config = config
        self._key = receipt_key
        self._recs: dict[_Key, _Rec] = {}
        self._op = 0
        self._now = 0.0
        self._pending_bytes = 0
        self.dropped_chunks = 0

    # ------------------------------------------------------------------ inputs

    def receive(self, topic_name: str, payload: bytes, now: float) -> list[ReceiverOutput]:
        """A message from ``$share/central/edge/+/up/custody/#``. ``now``: Unix seconds."""
        self._now = now
        try:
            device_id, msg = decode_up(topic_name, payload)
        except MalformedMessage as e:
            return [Alert(e.key, f"dropped message on {topic_name!r}: {e}",
                          _device_of(topic_name))]
        if isinstance(msg, Offer):
            return self._on_offer(device_id, msg, now)
        return self._on_chunk(device_id, msg, now, after_load=False)

    def store_result(self, action: StoreAction, view: StoreView,
                     now: float) -> list[ReceiverOutput]:
        """The store carried out ``action`` (durably) and now holds ``view``."""
        self._now = now
        key = (action.device_id, action.recording_id)
        if (view.device_id, view.recording_id) != key:
            raise ValueError(f"store answered {view.recording_id!r} for {action!r}")
        rec = self._recs.get(key)
        if rec is None:
            return []   # forgotten meanwhile; the store has it, a later message reloads
        rec.last_used = now
        self._merge(rec, view)
        if isinstance(action, StoreChunk) or action.op != rec.op:
            # A chunk write (or an answer we no longer wait for): ack and maybe complete.
            out: list[ReceiverOutput] = []
            if isinstance(action, StoreChunk):
                out.append(self._state(rec))   # the end-to-end ack: these bytes are durable
            return out + self._maybe_verify(rec)
        if isinstance(action, CommitRecording):
            if rec.view is not None and rec.view.receipt is not None:
                self._goto(rec, IDLE)
                return [self._receipt(rec), *self._drain(rec, now)]
            return [self._load(rec)]   # commit refused (generation moved on): look again
        if isinstance(action, DiscardGeneration):
            self._goto(rec, IDLE)
            return [self._state(rec), *self._drain(rec, now)]
        if isinstance(action, SaveOffer):
            self._goto(rec, IDLE)
            offer, rec.checking = rec.checking, None
            out = self._answer_offer(rec, offer, now) if offer is not None else []
            return out + self._drain(rec, now)
        # LoadRecord
        self._goto(rec, IDLE)
        return self._drain(rec, now)

    def manifest_checked(self, action: CheckManifest, result: ManifestClaims | ManifestRejected,
                         now: float) -> list[ReceiverOutput]:
        """Answer to ``CheckManifest``."""
        self._now = now
        rec = self._recs.get((action.device_id, action.recording_id))
        if rec is None or rec.phase != CHECKING or rec.op != action.op or rec.checking is None:
            return []
        offer = rec.checking
        d, rid = rec.device_id, rec.recording_id
        problem: tuple[str, str] | None = None
        if isinstance(result, ManifestRejected):
            problem = (result.key, result.detail)
        elif result.device_id != d:
            problem = ("offer.wrong_device",
                       f"device {d!r} offered a recording whose manifest is signed for device "
                       f"{result.device_id!r}")
        elif result.recording_id != rid:
            problem = ("offer.manifest_mismatch",
                       f"offer names {rid!r}, manifest names {result.recording_id!r}")
        elif (result.sealed_size, result.sealed_sha256) != (offer.sealed_size,
                                                            offer.sealed_sha256):
            problem = ("offer.manifest_mismatch",
                       "offer's sealed size/SHA-256 differ from the signed manifest's")
        if problem is not None:
            rec.checking = None
            self._goto(rec, IDLE)
            self._drop_pending(rec)
            return [self._reject(rec, problem[0], problem[1]),
                    Alert(problem[0], problem[1], d, rid)]
        self._begin(rec, SAVING)
        return [SaveOffer(rec.op, d, rid, OfferRecord(offer.seq, offer.priority,
                                                       offer.sealed_size, offer.sealed_sha256,
                                                       offer.manifest))]

    def verified(self, action: VerifyRecording, result: VerifyResult,
                 now: float) -> list[ReceiverOutput]:
        """Answer to ``VerifyRecording``."""
        self._now = now
        rec = self._recs.get((action.device_id, action.recording_id))
        if rec is None or rec.phase != VERIFYING or rec.op != action.op:
            return []
        d, rid = rec.device_id, rec.recording_id
        if result.ok:
            receipt = sign_receipt(self._key, device_id=d, recording_id=rid,
                                   sealed_sha256=action.sealed_sha256,
                                   sealed_size=action.sealed_size,
                                   received_at_ms=max(0, int(now * 1000)),
                                   receiver_id=self.config.receiver_id)
            self._begin(rec, COMMITTING)
            return [CommitRecording(rec.op, d, rid, action.generation, receipt)]
        if result.key == "hash_mismatch":
            self._begin(rec, DISCARDING)
            return [DiscardGeneration(rec.op, d, rid, action.generation),
                    Alert("custody.hash_mismatch",
                          f"reassembled {rid} of {d} failed its hash check ({result.detail}); "
                          "discarding generation "
                          f"{action.generation} and asking the device to send it again", d, rid)]
        self._goto(rec, IDLE)
        rec.refused = True
        key = result.key if re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)*", result.key) and len(
            result.key) <= 64 else "verify.failed"
        return [self._reject(rec, key, result.detail), Alert(key, result.detail, d, rid),
                *self._drain(rec, now)]

    def tick(self, now: float) -> list[ReceiverOutput]:
        """Timers: reload where an action's answer never came (the adapter lost it, e.g. an
        I/O error it only logged); forget cached views nobody used for ``idle_forget_s``."""
        self._now = now
        out: list[ReceiverOutput] = []
        for rec in list(self._recs.values()):
            if rec.phase != IDLE and now >= rec.op_started + self.config.op_timeout_s:
                if rec.checking is not None:   # answer that offer after the reload
                    self._buffer(rec, rec.checking, force=True)
                    rec.pending.insert(0, rec.pending.pop())
                    rec.checking = None
                out += [Alert("custody.op_timeout",
                              f"no answer to {rec.phase} of {rec.recording_id} for "
                              f"{self.config.op_timeout_s:.0f}s; reloading from the store",
                              rec.device_id, rec.recording_id),
                        self._load(rec)]
        limit = now - self.config.idle_forget_s
        for key in [k for k, r in self._recs.items()
                    if r.phase == IDLE and not r.pending and r.last_used < limit]:
            del self._recs[key]
        return out

    def next_deadline(self) -> float | None:
        """When ``tick`` has work (operation timeouts; eviction is not urgent)."""
        times = [r.op_started + self.config.op_timeout_s
                 for r in self._recs.values() if r.phase != IDLE]
        return min(times) if times else None

    @property
    def cached(self) -> int:
        return len(self._recs)

    # ------------------------------------------------------------------ handlers

    def _on_offer(self, d: str, offer: Offer, now: float) -> list[ReceiverOutput]:
        cfg = self.config
        bad: tuple[str, str] | None = None
        if offer.sealed_size > cfg.max_sealed_size:
            bad = ("offer.too_large", f"{offer.sealed_size} bytes; this receiver accepts at "
                                      f"most {cfg.max_sealed_size}")
        elif offer.sealed_size == 0:
            bad = ("offer.empty", "a sealed file is never empty")
        elif len(offer.manifest) > cfg.max_manifest:
            bad = ("offer.manifest_too_large", f"manifest of {len(offer.manifest)} bytes")
        if bad is not None:
            payload = encode_reject(Reject(offer.recording_id, bad[0], bad[1]))
            return [Publish(topic(d, DOWN, KIND_REJECT), payload, 1),
                    Alert(bad[0], bad[1], d, offer.recording_id)]
        rec, load = self._rec(d, offer.recording_id, now)
        rec.refused = False
        if rec.phase in (VERIFYING, COMMITTING) and rec.view is not None:
            return [self._state(rec, offer.query_id)]
        self._buffer(rec, offer)
        if rec.phase == IDLE:
            load = self._load(rec)   # an offer is a query: answer from fresh store truth
        return [load] if load is not None else []

    def _on_chunk(self, d: str, chunk: Chunk, now: float,
                  after_load: bool) -> list[ReceiverOutput]:
        rec, load = self._rec(d, chunk.recording_id, now)
        if rec.phase in (LOADING, CHECKING, SAVING, DISCARDING) or rec.view is None:
            self._buffer(rec, chunk)
            return [load] if load is not None else []
        view = rec.view
        if view.receipt is not None:
            return [self._receipt(rec)]
        if view.offer is None:
            return [self._state(rec)]      # unknown: the device must offer first
        if chunk.generation > view.generation and not after_load:
            self._buffer(rec, chunk)       # another receiver moved on: our view is stale
            return [self._load(rec)] if rec.phase == IDLE else []
        if chunk.generation != view.generation:
            return [self._state(rec)]      # from before a discard
        if chunk.end > view.offer.sealed_size or len(chunk.data) > self.config.max_chunk_data:
            return [Alert("custody.chunk_out_of_range",
                          f"chunk [{chunk.offset}, {chunk.end}) of {len(chunk.data)} bytes "
                          f"does not fit the offered {view.offer.sealed_size}-byte file",
                          d, chunk.recording_id), self._state(rec)]
        if view.held.covers(chunk.offset, chunk.end) or rec.phase != IDLE:
            return [self._state(rec)]      # duplicate: ack again
        return [StoreChunk(self._next_op(), d, chunk.recording_id, chunk.generation,
                           chunk.offset, chunk.data)]

    def _answer_offer(self, rec: _Rec, offer: Offer, now: float) -> list[ReceiverOutput]:
        view = rec.view
        assert view is not None
        stored = view.offer
        if stored is not None and (stored.sealed_size, stored.sealed_sha256) != (
                offer.sealed_size, offer.sealed_sha256):
            detail = (f"{rec.recording_id} is already held with another size/SHA-256; "
                      "recording ids must be unique per device")
            return [self._reject(rec, "offer.conflict", detail),
                    Alert("offer.conflict", detail, rec.device_id, rec.recording_id)]
        if view.receipt is not None:
            return [self._receipt(rec)]
        if stored is None:
            self._begin(rec, CHECKING)
            rec.checking = offer
            return [CheckManifest(rec.op, rec.device_id, rec.recording_id, offer.manifest)]
        return [self._state(rec, offer.query_id), *self._maybe_verify(rec)]

    # ------------------------------------------------------------------ helpers

    def _drain(self, rec: _Rec, now: float) -> list[ReceiverOutput]:
        """Handle buffered messages in arrival order until one starts a new operation."""
        out: list[ReceiverOutput] = []
        while rec.pending and rec.phase == IDLE:
            item = rec.pending.pop(0)
            self._pending_bytes -= item.size
            if isinstance(item.msg, Offer):
                out += self._answer_offer(rec, item.msg, now)
            else:
                out += self._on_chunk(rec.device_id, item.msg, now, after_load=True)
        if rec.phase == IDLE:
            out += self._maybe_verify(rec)
        return out

    def _maybe_verify(self, rec: _Rec) -> list[ReceiverOutput]:
        view = rec.view
        if (rec.phase != IDLE or rec.refused or view is None or view.offer is None
                or view.receipt is not None or not view.held.complete(view.offer.sealed_size)):
            return []
        self._begin(rec, VERIFYING)
        o = view.offer
        return [VerifyRecording(rec.op, rec.device_id, rec.recording_id, view.generation,
                                o.sealed_size, o.sealed_sha256, o.manifest)]

    def _merge(self, rec: _Rec, view: StoreView) -> None:
        old = rec.view
        if old is None or view.generation > old.generation:
            rec.view = view
        elif view.generation == old.generation:
            rec.view = StoreView(view.device_id, view.recording_id,
                                 view.offer or old.offer, view.generation,
                                 old.held.union(view.held), view.receipt or old.receipt)

    def _buffer(self, rec: _Rec, msg: Offer | Chunk, *,
                force: bool = False) -> list[ReceiverOutput]:
        size = len(msg.data) if isinstance(msg, Chunk) else len(msg.manifest)
        if isinstance(msg, Offer):
            # Only the latest offer (query) of a recording is worth answering.
            for old in [p for p in rec.pending if isinstance(p.msg, Offer)]:
                rec.pending.remove(old)
                self._pending_bytes -= old.size
        elif not force and self._pending_bytes + size > self.config.max_pending_bytes:
            self.dropped_chunks += 1   # the sender's timers will send it again
            return []
        rec.pending.append(_Pending(msg, size))
        self._pending_bytes += size
        return []

    def _drop_pending(self, rec: _Rec) -> None:
        self._pending_bytes -= sum(p.size for p in rec.pending)
        rec.pending.clear()

    def _rec(self, d: str, rid: str, now: float) -> tuple[_Rec, LoadRecord | None]:
        """The cached record, or a new one together with the load that fills it."""
        rec = self._recs.get((d, rid))
        load = None
        if rec is None:
            rec = self._recs[(d, rid)] = _Rec(d, rid, phase=LOADING, op=self._next_op(),
                                               op_started=now)
            load = LoadRecord(rec.op, d, rid)
        rec.last_used = now
        return rec, load

    def _load(self, rec: _Rec) -> LoadRecord:
        self._begin(rec, LOADING)
        return LoadRecord(rec.op, rec.device_id, rec.recording_id)

    def _begin(self, rec: _Rec, phase: str) -> None:
        """Enter a phase that waits for one adapter answer, matched by ``rec.op``."""
        self._goto(rec, phase)
        rec.op = self._next_op()
        rec.op_started = self._now

    def _goto(self, rec: _Rec, phase: str) -> None:
        if phase not in _TRANSITIONS[rec.phase]:
            raise RuntimeError(f"custody receiver bug: {rec.phase} → {phase}")
        rec.phase = phase

    def _next_op(self) -> int:
        self._op += 1
        return self._op

    def _state(self, rec: _Rec, query_id: int = 0) -> Publish:
        view = rec.view
        assert view is not None
        if view.offer is None:
            phase = PHASE_UNKNOWN
        elif view.held.complete(view.offer.sealed_size):
            phase = PHASE_VERIFYING
        else:
            phase = PHASE_RECEIVING
        held = view.held.truncated(self.config.max_state_ranges)
        msg = State(rec.recording_id, view.generation, phase, held, query_id)
        return Publish(topic(rec.device_id, DOWN, KIND_STATE), encode_state(msg), 1)

    def _receipt(self, rec: _Rec) -> Publish:
        assert rec.view is not None and rec.view.receipt is not None
        return Publish(topic(rec.device_id, DOWN, KIND_RECEIPT), rec.view.receipt, 1)

    def _reject(self, rec: _Rec, reason: str, detail: str) -> Publish:
        payload = encode_reject(Reject(rec.recording_id, reason, detail))
        return Publish(topic(rec.device_id, DOWN, KIND_REJECT), payload, 1)


def _device_of(topic_name: str) -> str | None:
    parts = topic_name.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "edge" else None
