"""Device side of the custody chain: which bytes of which sealed file to publish next.

Place in the data flow: spool (sealed files + signed manifests) → **Sender** → MQTT adapter →
broker → central receiver. The Sender does no I/O. The forwarder adapter feeds it events and
carries out the outputs it returns; see docs/custody-protocol.md §8 for the adapter contract.

Theory of operation
-------------------
Each recording the spool hands over (``enqueue``) becomes an *item* with a phase:

    QUEUED ──offer──▶ OFFERING ──State──▶ SENDING ──all bytes held──▶ AWAITING_RECEIPT
                          ▲                  │  ▲                            │
                          └── State(unknown) ┘  └─ local file OK ─ CHECKING_LOCAL ◀─ gen bump
    any phase ──valid receipt──▶ (done: ``Receipted`` output, item removed)
    any phase ──Reject / too many verify failures / receipts that never verify──▶ PARKED
    PARKED ──park_s──▶ QUEUED

* **Offers are also queries.** An Offer carries a fresh ``query_id``; the receiver answers with
  a State naming the durable truth: the *generation* and the byte ranges it holds. The first
  answer lets the item start sending, so a resume after any restart sends only what is missing.
* **Window.** At most ``window_chunks`` chunks are in flight across all items. Items are served
  strictly in (priority, seq) order, so an urgent small item passes bulk ones; at most
  ``max_open`` unfinished items are offered at a time.
* **End-to-end acks.** The receiver sends a State after each durably stored chunk; its ranges
  (a lower bound, only growing within a generation) slide the window. A broker PUBACK counts
  for nothing here.
* **Loss.** If nothing new is acked for ``progress_timeout_s`` while chunks are in flight, the
  item stops sending and *probes*: it re-offers with a new query id. The State answering that
  query id is authoritative: every in-flight chunk sent before the query and still not held is
  lost, and only those bytes are sent again. Unanswered probes back off exponentially (jitter
  from the injected ``rng``), as do unanswered offers and a missing receipt.
* **Generations.** The receiver bumps a recording's generation when the reassembled file fails
  its hash check and it throws the data away. A State with a higher generation than the one
  this item knows means the data was rejected: the sender asks the adapter to re-hash its own
  copy (``VerifyLocal``) before sending everything again, and gives up (``GaveUp``) if its own
  copy is corrupt or after ``max_verify_failures``. States of an older generation are ignored.
* **Receipts.** A receipt is verified with the central receipt public key against this device,
  the recording id, the sealed SHA-256 and size. Only then does ``Receipted`` come out — the
  sole output that lets the spool delete a recording. Forged or mismatched receipts produce an
  ``Alert`` and change nothing.
* **Restarts.** The Sender keeps nothing on disk. After a restart the adapter enqueues every
  recording the spool still holds; offers find out what the central store already has.

Time is whatever monotonic clock the caller passes as ``now`` (seconds); ``next_deadline()``
says when ``tick`` must be called next. Nothing is sent while the link is down.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.custody.errors import MalformedMessage, ReceiptError
from edge.custody.messages import (
    KIND_CHUNK,
    KIND_OFFER,
    MAX_MANIFEST,
    PHASE_UNKNOWN,
    UP,
    Alert,
    Offer,
    Publish,
    ReceiptDelivery,
    Reject,
    State,
    check_device_id,
    check_recording_id,
    chunk_header_size,
    decode_down,
    encode_chunk,
    encode_offer,
    topic,
)
from edge.custody.ranges import RangeSet
from edge.custody.receipt import VerifiedReceipt, parse_receipt, verify_receipt

__all__ = [
    "AWAITING_RECEIPT",
    "CHECKING_LOCAL",
    "OFFERING",
    "PARKED",
    "QUEUED",
    "SENDING",
    "GaveUp",
    "PublishChunk",
    "Receipted",
    "Recording",
    "Sender",
    "SenderConfig",
    "SenderOutput",
    "VerifyLocal",
]

# Item phases.
QUEUED = "queued"
OFFERING = "offering"
SENDING = "sending"
AWAITING_RECEIPT = "awaiting_receipt"
CHECKING_LOCAL = "checking_local"
PARKED = "parked"

# Allowed phase changes; anything else is a bug in this module (and raises).
_TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({OFFERING, PARKED}),
    OFFERING: frozenset({SENDING, AWAITING_RECEIPT, CHECKING_LOCAL, PARKED}),
    SENDING: frozenset({OFFERING, AWAITING_RECEIPT, CHECKING_LOCAL, PARKED}),
    AWAITING_RECEIPT: frozenset({OFFERING, SENDING, CHECKING_LOCAL, PARKED}),
    CHECKING_LOCAL: frozenset({SENDING, PARKED}),
    PARKED: frozenset({QUEUED}),
}


@dataclass(frozen=True)
class SenderConfig:
    """Tuning for a high-latency metered 4G link; every timer backs off from its base."""

    max_payload: int = 128 * 1024      # bytes per MQTT payload, chunk header included
    window_chunks: int = 16            # chunks in flight (keep <= broker max_inflight_messages)
    max_open: int = 2                  # unfinished recordings offered at a time
    offer_timeout_s: float = 15.0      # no State after an offer / probe → offer again
    progress_timeout_s: float = 60.0   # nothing acked while chunks in flight → probe
    receipt_timeout_s: float = 30.0    # all bytes held, no receipt yet → ask again
    backoff_factor: float = 2.0
    backoff_max_s: float = 600.0
    jitter: float = 0.2                # ± fraction, so 7,000 offices do not retry in step
    max_verify_failures: int = 3       # central hash failures before parking the item
    park_s: float = 3600.0             # parked items are offered again after this long

    def __post_init__(self) -> None:
        if self.max_payload < 256:   # a chunk header is at most 149 bytes
            raise ValueError("max_payload must be at least 256 bytes")
        if self.window_chunks < 1 or self.max_open < 1 or self.max_verify_failures < 1:
            raise ValueError("window_chunks, max_open and max_verify_failures must be >= 1")
        if min(self.offer_timeout_s, self.progress_timeout_s, self.receipt_timeout_s) <= 0:
            raise ValueError("timeouts must be positive")
        if self.backoff_factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff_factor must be >= 1 and jitter in [0, 1)")


@dataclass(frozen=True)
class Recording:
    """What the spool knows about one sealed recording that still needs a receipt."""

    recording_id: str
    seq: int
    priority: int
    sealed_size: int
    sealed_sha256: bytes
    manifest: bytes = field(repr=False)


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class PublishChunk:
    """Read ``length`` bytes at ``offset`` of the sealed file, frame them, publish them.

    The adapter does ``publish(topic, frame(spool.read(recording_id, offset, length)), qos)``.
    """

    topic: str
    recording_id: str
    generation: int
    offset: int
    length: int
    qos: int = 1

    def frame(self, data: bytes) -> bytes:
        if len(data) != self.length:
            raise ValueError(f"read {len(data)} bytes of {self.recording_id} at {self.offset}, "
                             f"expected {self.length}: the sealed file is shorter than offered")
        return encode_chunk(self.recording_id, self.generation, self.offset, data)


@dataclass(frozen=True)
class Receipted:
    """A verified receipt: the spool may now delete the recording (keep the receipt bytes)."""

    recording_id: str
    receipt: VerifiedReceipt

    @property
    def receipt_bytes(self) -> bytes:
        return self.receipt.receipt


@dataclass(frozen=True)
class VerifyLocal:
    """The central site threw the data away: re-hash the spooled file and call
    ``Sender.local_verified(recording_id, ok, now)``."""

    recording_id: str
    sealed_size: int
    sealed_sha256: bytes


@dataclass(frozen=True)
class GaveUp:
    """Stopped forwarding a recording. ``retry_at`` (the Sender's clock) or None: never in this
    run — e.g. the spooled file is corrupt and must be quarantined by the spool."""

    recording_id: str
    key: str
    detail: str
    retry_at: float | None


SenderOutput = Publish | PublishChunk | Receipted | VerifyLocal | GaveUp | Alert


@dataclass
class _Flight:
    end: int
    tx: int          # send order, to compare with the probe that may declare it lost


@dataclass
class _Item:
    rec: Recording
    piece: int                       # data bytes per chunk for this recording
    phase: str = QUEUED
    gen: int | None = None
    held: RangeSet = field(default_factory=RangeSet)
    inflight: dict[int, _Flight] = field(default_factory=dict)
    deadline: float | None = None
    attempt: int = 0
    query_id: int = 0
    query_tx: int = 0
    probing: bool = False
    last_progress: float = 0.0
    failures: int = 0
    bad_receipts: int = 0

    @property
    def order(self) -> tuple[int, int]:
        return (self.rec.priority, self.rec.seq)


class Sender:
    """One device's custody sender. Not thread-safe: call it from one loop."""

    def __init__(self, device_id: str, receipt_key: Ed25519PublicKey,
                 config: SenderConfig | None = None, *, rng: random.Random | None = None) -> None:
        self.device_id = check_device_id(device_id)
        self.receipt_key = receipt_key
        self.config = config or SenderConfig()
        self._rng = rng or random.Random()
        self._items: dict[str, _Item] = {}
        self._link_up = False
        self._tx = 0
        self._next_query = 0
        self._offer_topic = topic(device_id, UP, KIND_OFFER)
        self._chunk_topic = topic(device_id, UP, KIND_CHUNK)

    # ------------------------------------------------------------------ inputs

    def enqueue(self, rec: Recording, now: float) -> list[SenderOutput]:
        """Hand over a spooled recording (again, after a restart: that is how resume starts)."""
        check_recording_id(rec.recording_id)
        if rec.sealed_size <= 0 or len(rec.sealed_sha256) != 32:
            raise ValueError(f"{rec.recording_id}: sealed_size must be > 0 and sha256 32 bytes")
        if not 0 < len(rec.manifest) <= MAX_MANIFEST or not 0 <= rec.priority < 256:
            raise ValueError(f"{rec.recording_id}: manifest size or priority out of range")
        old = self._items.get(rec.recording_id)
        if old is not None:
            if (old.rec.sealed_sha256, old.rec.sealed_size) != (rec.sealed_sha256,
                                                                rec.sealed_size):
                return [Alert("custody.enqueue_conflict",
                              f"{rec.recording_id} enqueued again with different content; "
                              "keeping the first", self.device_id, rec.recording_id)]
            return self._pump(now)
        piece = self.config.max_payload - chunk_header_size(rec.recording_id)
        self._items[rec.recording_id] = _Item(rec, piece)
        return self._pump(now)

    def forget(self, recording_id: str) -> None:
        """The spool no longer has it (deleted by ops, unreadable): stop sending it."""
        self._items.pop(recording_id, None)

    def link_up(self, now: float) -> list[SenderOutput]:
        """MQTT session (re)connected: re-ask the receiver about everything unfinished."""
        self._link_up = True
        out: list[SenderOutput] = []
        for item in self._ordered():
            if item.phase in (OFFERING, SENDING, AWAITING_RECEIPT):
                item.attempt = 0
                if item.phase == SENDING:
                    item.probing = True
                out.append(self._send_offer(item, now, self.config.offer_timeout_s))
        return out + self._pump(now)

    def link_down(self, now: float) -> list[SenderOutput]:
        self._link_up = False
        return []

    def receive(self, topic_name: str, payload: bytes, now: float) -> list[SenderOutput]:
        """A message on ``edge/{device}/down/custody/#``."""
        try:
            device_id, msg = decode_down(topic_name, payload)
        except MalformedMessage as e:
            return [Alert(e.key, f"dropped message on {topic_name!r}: {e}")]
        if device_id != self.device_id:
            return [Alert("custody.wrong_device",
                          f"message for device {device_id!r} reached {self.device_id!r}")]
        if isinstance(msg, ReceiptDelivery):
            return self._on_receipt(msg.receipt, now)
        item = self._items.get(msg.recording_id)
        if item is None:
            return []   # already receipted or forgotten; late duplicates are normal
        if isinstance(msg, State):
            return self._on_state(item, msg, now)
        return self._on_reject(item, msg, now)

    def local_verified(self, recording_id: str, ok: bool, now: float) -> list[SenderOutput]:
        """Answer to ``VerifyLocal``: does the spooled file still hash to its sealed SHA-256?"""
        item = self._items.get(recording_id)
        if item is None or item.phase != CHECKING_LOCAL:
            return []
        if not ok:
            del self._items[recording_id]
            return [GaveUp(recording_id, "custody.local_corrupt",
                           "the spooled sealed file no longer matches its SHA-256 (SD card "
                           "damage?); quarantine it and check the card", None)]
        self._goto(item, SENDING)
        item.probing = False
        item.attempt = 0
        item.last_progress = now
        return self._pump(now)

    def tick(self, now: float) -> list[SenderOutput]:
        """Timers. Call at ``next_deadline()`` (calling more often is harmless)."""
        out: list[SenderOutput] = []
        cfg = self.config
        for item in self._ordered():
            if item.deadline is None or now < item.deadline:
                continue
            if item.phase == PARKED:
                self._goto(item, QUEUED)
                item.deadline = None
                item.attempt = 0
                item.failures = 0
            elif not self._link_up:
                continue
            elif item.phase == OFFERING:
                out.append(self._send_offer(item, now, cfg.offer_timeout_s))
            elif item.phase == SENDING:
                # No progress (or an unanswered probe): ask for the authoritative state.
                item.probing = True
                out.append(self._send_offer(item, now, cfg.offer_timeout_s))
            elif item.phase == AWAITING_RECEIPT:
                out.append(self._send_offer(item, now, cfg.receipt_timeout_s))
        return out + self._pump(now)

    # ------------------------------------------------------------------ introspection

    def next_deadline(self) -> float | None:
        times = [i.deadline for i in self._items.values() if i.deadline is not None]
        return min(times) if times else None

    def progress(self) -> dict[str, tuple[str, int, int]]:
        """``recording_id → (phase, bytes held centrally, sealed size)`` for telemetry."""
        return {rid: (i.phase, i.held.total, i.rec.sealed_size) for rid, i in self._items.items()}

    @property
    def in_flight(self) -> int:
        return sum(len(i.inflight) for i in self._items.values())

    # ------------------------------------------------------------------ message handlers

    def _on_receipt(self, receipt: bytes, now: float) -> list[SenderOutput]:
        try:
            claimed = parse_receipt(receipt)
        except ReceiptError as e:
            return [Alert(e.key, f"dropped receipt: {e}")]
        item = self._items.get(claimed.recording_id)
        if item is None:
            return []   # a duplicate of one already acted on
        try:
            verified = verify_receipt(self.receipt_key, receipt, self.device_id,
                                      item.rec.recording_id, item.rec.sealed_sha256,
                                      expect_sealed_size=item.rec.sealed_size)
        except ReceiptError as e:
            out: list[SenderOutput] = [Alert(e.key, str(e), self.device_id,
                                             item.rec.recording_id)]
            item.bad_receipts += 1
            if item.bad_receipts >= self.config.max_verify_failures and item.phase != PARKED:
                # Nothing is released, but the slot is: a recording whose receipts never
                # verify (e.g. central rotated its receipt key and this device lacks the new
                # one) must not stop every other recording from moving.
                out.append(self._park(item, now, e.key,
                                      f"{item.bad_receipts} receipts failed verification"))
                out.extend(self._pump(now))
            return out
        del self._items[item.rec.recording_id]
        return [Receipted(item.rec.recording_id, verified), *self._pump(now)]

    def _on_state(self, item: _Item, msg: State, now: float) -> list[SenderOutput]:
        cfg = self.config
        if item.phase in (QUEUED, PARKED, CHECKING_LOCAL):
            return []
        if msg.phase == PHASE_UNKNOWN:
            # The store has no offer for it (lost offer, or central data removed): offer again.
            if item.phase in (SENDING, AWAITING_RECEIPT):
                self._goto(item, OFFERING)
                item.inflight.clear()
                item.probing = False
                item.attempt = 0
                return [self._send_offer(item, now, cfg.offer_timeout_s), *self._pump(now)]
            return []
        if item.gen is not None and msg.generation < item.gen:
            return []   # from before a discard: stale
        if item.gen is not None and msg.generation > item.gen:
            return self._on_generation_bump(item, msg, now)
        item.gen = msg.generation
        answered = msg.query_id != 0 and msg.query_id == item.query_id
        # Acks are lower bounds and only add. The answer to our latest query was read fresh
        # from the store after everything acked before it was durable, so it replaces what
        # we believed: if central lost bytes it had acked, they are sent again, not awaited.
        merged = msg.held if answered else item.held.union(msg.held)
        if merged.total > item.held.total:
            item.last_progress = now
            item.attempt = 0
        item.held = merged
        for off in [o for o, f in item.inflight.items() if merged.covers(o, f.end)]:
            del item.inflight[off]
        if answered:
            # Authoritative: what was sent before the probe and is still missing is lost.
            for off in [o for o, f in item.inflight.items() if f.tx < item.query_tx]:
                del item.inflight[off]
            item.probing = False
            item.attempt = 0
            item.last_progress = now
        if item.phase == OFFERING:
            self._goto(item, SENDING)
            item.probing = False
            item.last_progress = now
        if item.held.complete(item.rec.sealed_size):
            if item.phase != AWAITING_RECEIPT:
                self._goto(item, AWAITING_RECEIPT)
                item.inflight.clear()
                item.probing = False
                item.attempt = 0
                item.deadline = now + self._backoff(cfg.receipt_timeout_s, 0)
        elif item.phase == AWAITING_RECEIPT:
            self._goto(item, SENDING)   # an authoritative answer shows bytes missing
        if item.phase == SENDING:
            self._set_sending_deadline(item)
        return self._pump(now)

    def _on_generation_bump(self, item: _Item, msg: State, now: float) -> list[SenderOutput]:
        assert item.gen is not None
        item.failures += msg.generation - item.gen
        item.gen = msg.generation
        item.held = msg.held
        item.inflight.clear()
        item.probing = False
        item.deadline = None
        rid = item.rec.recording_id
        if item.failures >= self.config.max_verify_failures:
            return [self._park(item, now, "custody.verify_failed",
                               f"the central site rejected the reassembled file {item.failures} "
                               "times (hash mismatch)"), *self._pump(now)]
        self._goto(item, CHECKING_LOCAL)
        return [VerifyLocal(rid, item.rec.sealed_size, item.rec.sealed_sha256),
                Alert("custody.central_hash_mismatch",
                      f"central discarded {rid} (hash mismatch, generation {msg.generation}); "
                      "checking the local copy before sending it again", self.device_id, rid),
                *self._pump(now)]

    def _on_reject(self, item: _Item, msg: Reject, now: float) -> list[SenderOutput]:
        if item.phase in (QUEUED, PARKED):
            return []
        return [self._park(item, now, f"custody.rejected.{msg.reason}", msg.detail),
                *self._pump(now)]

    # ------------------------------------------------------------------ helpers

    def _goto(self, item: _Item, phase: str) -> None:
        if phase not in _TRANSITIONS[item.phase]:
            raise RuntimeError(f"custody sender bug: {item.phase} → {phase}")
        item.phase = phase

    def _park(self, item: _Item, now: float, key: str, detail: str) -> GaveUp:
        self._goto(item, PARKED)
        item.inflight.clear()
        item.probing = False
        item.gen = None
        item.held = RangeSet()
        item.deadline = now + self.config.park_s
        return GaveUp(item.rec.recording_id, key, detail, item.deadline)

    def _ordered(self) -> list[_Item]:
        return sorted(self._items.values(), key=lambda i: i.order)

    def _backoff(self, base: float, attempt: int) -> float:
        cfg = self.config
        delay: float = min(cfg.backoff_max_s, base * cfg.backoff_factor ** min(attempt, 64))
        return delay * (1.0 + cfg.jitter * (2.0 * self._rng.random() - 1.0))

    def _send_offer(self, item: _Item, now: float, base: float) -> Publish:
        if item.phase == QUEUED:
            self._goto(item, OFFERING)
        self._next_query = self._next_query % (2**32 - 1) + 1
        self._tx += 1
        item.query_id = self._next_query
        item.query_tx = self._tx
        item.deadline = now + self._backoff(base, item.attempt)
        item.attempt += 1
        rec = item.rec
        payload = encode_offer(Offer(rec.recording_id, rec.seq, rec.priority, rec.sealed_size,
                                     rec.sealed_sha256, rec.manifest, item.query_id))
        return Publish(self._offer_topic, payload, 1)

    def _set_sending_deadline(self, item: _Item) -> None:
        if item.probing:
            return   # the probe's own deadline stands
        item.deadline = (item.last_progress + self.config.progress_timeout_s
                         if item.inflight else None)

    def _next_piece(self, item: _Item) -> tuple[int, int] | None:
        busy = RangeSet.of((o, f.end) for o, f in item.inflight.items())
        for start, end in item.held.union(busy).gaps(item.rec.sealed_size):
            # Cut on a grid of ``piece`` so resends line up with first sends.
            return start, min(end, (start // item.piece + 1) * item.piece)
        return None

    def _pump(self, now: float) -> list[SenderOutput]:
        """Open items in order and fill the window; the only place that sends new data."""
        if not self._link_up:
            return []
        out: list[SenderOutput] = []
        senders: list[_Item] = []
        slots = self.config.max_open
        for item in self._ordered():
            if slots == 0:
                break
            if item.phase in (AWAITING_RECEIPT, PARKED, CHECKING_LOCAL):
                continue
            slots -= 1
            if item.phase == QUEUED:
                item.attempt = 0
                out.append(self._send_offer(item, now, self.config.offer_timeout_s))
            elif item.phase == SENDING and not item.probing:
                senders.append(item)
        room = self.config.window_chunks - self.in_flight
        for item in senders:
            while room > 0:
                piece = self._next_piece(item)
                if piece is None:
                    break
                start, end = piece
                if not item.inflight:
                    item.last_progress = now
                self._tx += 1
                item.inflight[start] = _Flight(end, self._tx)
                room -= 1
                out.append(PublishChunk(self._chunk_topic, item.rec.recording_id,
                                        item.gen or 0, start, end - start))
            self._set_sending_deadline(item)
        return out
