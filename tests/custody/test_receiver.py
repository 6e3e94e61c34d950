"""Receiver machine, one event at a time: what it asks of the adapter and when it speaks."""

from __future__ import annotations

import hashlib

from edge.custody.messages import (
    PHASE_RECEIVING,
    PHASE_UNKNOWN,
    PHASE_VERIFYING,
    Alert,
    Offer,
    Publish,
    Reject,
    State,
    decode_down,
    encode_chunk,
    encode_offer,
)
from edge.custody.ranges import RangeSet
from edge.custody.receipt import verify_receipt
from edge.custody.receiver import (
    CheckManifest,
    CommitRecording,
    DiscardGeneration,
    LoadRecord,
    ManifestClaims,
    Receiver,
    ReceiverConfig,
    ReceiverOutput,
    SaveOffer,
    StoreChunk,
    VerifyRecording,
    VerifyResult,
    run_store_action,
)

from .helpers import RECEIPT_KEY, MemoryStore, check_manifest, make_manifest

DEV = "kec-3171-01"
OTHER = "kec-3171-02"
UP_OFFER = f"edge/{DEV}/up/custody/offer"
UP_CHUNK = f"edge/{DEV}/up/custody/chunk"
DATA = bytes(range(256)) * 4        # 1024 bytes
SHA = hashlib.sha256(DATA).digest()
NOW = 1_714_000_000.0


def offer(rid: str = "r1", q: int = 1, data: bytes = DATA, device: str = DEV) -> bytes:
    return encode_offer(Offer(rid, 1, 1, len(data), hashlib.sha256(data).digest(),
                              make_manifest(device, rid, data), q))


def chunk(off: int, end: int, gen: int = 0, rid: str = "r1", data: bytes = DATA) -> bytes:
    return encode_chunk(rid, gen, off, data[off:end])


class Rig:
    """Carries out store actions and manifest checks at once; keeps everything said."""

    def __init__(self, store: MemoryStore | None = None, **cfg: object) -> None:
        self.store = store or MemoryStore()
        self.rx = Receiver(ReceiverConfig("rx-a", **cfg), RECEIPT_KEY)  # type: ignore[arg-type]
        self.log: list[ReceiverOutput] = []

    def run(self, outputs: list[ReceiverOutput], *, verify: VerifyResult | None = None,
            now: float = NOW) -> list[ReceiverOutput]:
        """Work through outputs until only messages and alerts are left; return those."""
        said: list[ReceiverOutput] = []
        queue = list(outputs)
        while queue:
            out = queue.pop(0)
            self.log.append(out)
            if isinstance(out, (Publish, Alert)):
                said.append(out)
            elif isinstance(out, CheckManifest):
                queue += self.rx.manifest_checked(out, check_manifest(out.device_id,
                                                                      out.manifest), now)
            elif isinstance(out, VerifyRecording):
                queue += self.rx.verified(out, verify or VerifyResult(True), now)
            else:
                queue += self.rx.store_result(out, run_store_action(self.store, out), now)
        return said

    def send(self, topic: str, payload: bytes, **kw: object) -> list[ReceiverOutput]:
        return self.run(self.rx.receive(topic, payload, NOW), **kw)  # type: ignore[arg-type]

    def actions(self, kind: type) -> list[ReceiverOutput]:
        return [a for a in self.log if isinstance(a, kind)]


def states(said: list[ReceiverOutput]) -> list[State]:
    out = []
    for p in said:
        if isinstance(p, Publish) and p.topic.endswith("/state"):
            _, m = decode_down(p.topic, p.payload)
            assert isinstance(m, State)
            out.append(m)
    return out


def rejects(said: list[ReceiverOutput]) -> list[Reject]:
    out = []
    for p in said:
        if isinstance(p, Publish) and p.topic.endswith("/reject"):
            _, m = decode_down(p.topic, p.payload)
            assert isinstance(m, Reject)
            out.append(m)
    return out


def receipts(said: list[ReceiverOutput]) -> list[bytes]:
    return [p.payload for p in said if isinstance(p, Publish) and p.topic.endswith("/receipt")]


def accepted_rig(**cfg: object) -> Rig:
    rig = Rig(**cfg)
    said = rig.send(UP_OFFER, offer(q=7))
    assert states(said) == [State("r1", 0, PHASE_RECEIVING, RangeSet(), 7)]
    return rig


def test_new_offer_is_checked_saved_and_answered_with_its_query_id() -> None:
    rig = accepted_rig()
    kinds = [type(a).__name__ for a in rig.log if not isinstance(a, Publish)]
    assert kinds == ["LoadRecord", "CheckManifest", "SaveOffer"]
    assert rig.store.recs[(DEV, "r1")].offer is not None


def test_a_chunk_is_acked_only_after_the_store_reports_it_durable() -> None:
    rig = accepted_rig()
    first = rig.rx.receive(UP_CHUNK, chunk(0, 300), NOW)
    assert [type(o) for o in first] == [StoreChunk]          # no State yet
    action = first[0]
    assert isinstance(action, StoreChunk)
    said = rig.run(first)
    assert states(said) == [State("r1", 0, PHASE_RECEIVING, RangeSet.of([(0, 300)]))]


def test_receipt_is_published_only_after_commit_and_verifies() -> None:
    rig = accepted_rig()
    rig.send(UP_CHUNK, chunk(0, 600))
    out = rig.rx.receive(UP_CHUNK, chunk(600, 1024), NOW)
    store_last = out[0]
    assert isinstance(store_last, StoreChunk)
    after_store = rig.rx.store_result(store_last, run_store_action(rig.store, store_last), NOW)
    assert [type(o) for o in after_store] == [Publish, VerifyRecording]
    verify = after_store[1]
    assert isinstance(verify, VerifyRecording)
    assert (verify.sealed_size, verify.sealed_sha256, verify.generation) == (1024, SHA, 0)
    after_verify = rig.rx.verified(verify, VerifyResult(True), NOW)
    assert [type(o) for o in after_verify] == [CommitRecording]   # nothing published yet
    commit = after_verify[0]
    assert isinstance(commit, CommitRecording)
    said = rig.run([commit])
    (receipt,) = receipts(said)
    v = verify_receipt(RECEIPT_KEY.public_key(), receipt, DEV, "r1", SHA,
                       expect_sealed_size=1024)
    assert v.fields.receiver_id == "rx-a"
    assert rig.store.recs[(DEV, "r1")].final == DATA


def test_duplicate_recording_gets_the_stored_receipt_and_no_second_copy() -> None:
    rig = accepted_rig()
    (receipt,) = receipts(rig.send(UP_CHUNK, chunk(0, 1024)))
    other = Rig(rig.store)                    # another receiver instance, after a restart
    assert receipts(other.send(UP_OFFER, offer(q=9))) == [receipt]
    assert receipts(other.send(UP_CHUNK, chunk(0, 100))) == [receipt]
    assert not other.actions(CheckManifest) and not other.actions(CommitRecording)
    assert rig.store.commits == {(DEV, "r1"): 1}


def test_offer_signed_for_another_device_is_rejected() -> None:
    rig = Rig()
    said = rig.send(UP_OFFER, offer(device=OTHER))    # OTHER's manifest, on DEV's topic
    # The adapter checks with DEV's certificate: the signature fails...
    assert [r.reason for r in rejects(said)] == ["manifest.bad_signature"]
    assert not rig.actions(SaveOffer)


def test_manifest_claiming_another_device_is_rejected_even_if_signed() -> None:
    rig = Rig()
    out = rig.rx.receive(UP_OFFER, offer(), NOW)
    (load,) = out
    assert isinstance(load, LoadRecord)
    (check,) = rig.rx.store_result(load, rig.store.load(DEV, "r1"), NOW)
    assert isinstance(check, CheckManifest)
    said = rig.rx.manifest_checked(check, ManifestClaims(OTHER, "r1", 1024, SHA), NOW)
    assert [r.reason for r in rejects(said)] == ["offer.wrong_device"]
    assert any(isinstance(a, Alert) and a.key == "offer.wrong_device" for a in said)
    assert rig.store.recs[(DEV, "r1")].offer is None


def test_offer_whose_size_or_hash_differs_from_its_manifest_is_rejected() -> None:
    rig = Rig()
    bad = encode_offer(Offer("r1", 1, 1, 1024, b"\0" * 32, make_manifest(DEV, "r1", DATA), 1))
    assert [r.reason for r in rejects(rig.send(UP_OFFER, bad))] == ["offer.manifest_mismatch"]


def test_offer_conflicting_with_the_stored_one_is_rejected() -> None:
    rig = accepted_rig()
    other = DATA[::-1]
    said = rig.send(UP_OFFER, offer(data=other))
    assert [r.reason for r in rejects(said)] == ["offer.conflict"]
    assert rig.store.recs[(DEV, "r1")].offer.sealed_sha256 == SHA  # type: ignore[union-attr]


def test_chunks_outside_the_offer_or_generation_are_not_stored() -> None:
    rig = accepted_rig()
    long = DATA + b"x" * 10
    said = rig.send(UP_CHUNK, encode_chunk("r1", 0, 1000, long[1000:1034]))
    assert [a.key for a in said if isinstance(a, Alert)] == ["custody.chunk_out_of_range"]
    said = rig.send(UP_CHUNK, chunk(0, 10, gen=0))
    said = rig.send(UP_CHUNK, chunk(0, 10, gen=0))      # already held: ack, no write
    assert states(said)[0].held == RangeSet.of([(0, 10)])
    assert len(rig.actions(StoreChunk)) == 1
    assert rig.store.bytes_written == 10


def test_chunk_for_an_unoffered_recording_asks_for_an_offer() -> None:
    rig = Rig()
    said = rig.send(UP_CHUNK, chunk(0, 10, rid="nobody"))
    assert [s.phase for s in states(said)] == [PHASE_UNKNOWN]
    assert not rig.actions(StoreChunk)


def test_hash_mismatch_discards_the_generation_and_tells_the_device() -> None:
    rig = accepted_rig()
    said = rig.send(UP_CHUNK, chunk(0, 1024), verify=VerifyResult(False, "hash_mismatch", "x"))
    assert len(rig.actions(DiscardGeneration)) == 1
    assert [a.key for a in said if isinstance(a, Alert)] == ["custody.hash_mismatch"]
    assert not receipts(said)
    assert states(said)[-1] == State("r1", 1, PHASE_RECEIVING, RangeSet())
    assert rig.store.recs[(DEV, "r1")].generation == 1
    assert rig.store.commits == {}
    # Chunks of the old generation are refused; the new generation is stored.
    said = rig.send(UP_CHUNK, chunk(0, 10, gen=0))
    assert states(said)[-1].generation == 1 and rig.store.recs[(DEV, "r1")].held.total == 0
    said = rig.send(UP_CHUNK, chunk(0, 1024, gen=1))
    assert receipts(said)


def test_revoked_device_at_final_check_is_rejected_not_discarded() -> None:
    rig = accepted_rig()
    said = rig.send(UP_CHUNK, chunk(0, 1024),
                    verify=VerifyResult(False, "manifest.revoked", "certificate revoked"))
    assert [r.reason for r in rejects(said)] == ["manifest.revoked"]
    assert rig.store.recs[(DEV, "r1")].generation == 0


def test_every_offer_reloads_so_another_receivers_progress_is_seen() -> None:
    a = accepted_rig()
    b = Rig(a.store)
    b.send(UP_CHUNK, chunk(0, 500))          # b loads and stores; a's cache knows nothing
    said = a.send(UP_OFFER, offer(q=11))
    assert states(said) == [State("r1", 0, PHASE_RECEIVING, RangeSet.of([(0, 500)]), 11)]


def test_completion_by_another_receivers_write_is_noticed_on_query() -> None:
    a = accepted_rig()
    store = a.store
    store.put_chunk(DEV, "r1", 0, 0, DATA)    # written by some other instance, no message
    said = a.send(UP_OFFER, offer(q=12))
    assert states(said)[0].phase == PHASE_VERIFYING
    assert receipts(said)


def test_lost_adapter_answer_is_retried_after_the_operation_timeout() -> None:
    rig = Rig(op_timeout_s=30.0)
    (load,) = rig.rx.receive(UP_OFFER, offer(q=3), NOW)
    assert isinstance(load, LoadRecord)
    assert rig.rx.next_deadline() == NOW + 30.0
    assert rig.rx.tick(NOW + 29) == []
    out = rig.rx.tick(NOW + 30)                # the answer never came
    assert [type(o) for o in out] == [Alert, LoadRecord]
    said = rig.run(out[1:], now=NOW + 30)
    assert states(said) == [State("r1", 0, PHASE_RECEIVING, RangeSet(), 3)]


def test_oversized_offer_is_refused_without_touching_the_store() -> None:
    rig = Rig(max_sealed_size=1000)
    said = rig.send(UP_OFFER, offer())
    assert [r.reason for r in rejects(said)] == ["offer.too_large"]
    assert rig.store.recs == {}


def test_malformed_input_becomes_an_alert_not_an_exception() -> None:
    rig = Rig()
    for topic, payload in [(UP_CHUNK, b"garbage"), ("edge/x/up/custody/chunk", b""),
                           (UP_OFFER, offer()[:-3]), (UP_CHUNK, chunk(0, 5)[:-1] + b"\0")]:
        out = rig.rx.receive(topic, payload, NOW)
        assert len(out) == 1 and isinstance(out[0], Alert)
    assert rig.store.recs == {}


def test_while_loading_only_a_bounded_amount_is_buffered() -> None:
    manifest_size = len(make_manifest(DEV, "r1", DATA))
    rig = Rig(max_pending_bytes=manifest_size + 600)
    outs: list[ReceiverOutput] = []
    for q in (1, 2, 3):                                 # repeated offers keep only the latest
        outs += rig.rx.receive(UP_OFFER, offer(q=q), NOW)
    for off in range(0, 1024, 256):
        outs += rig.rx.receive(UP_CHUNK, chunk(off, off + 256), NOW)
    assert rig.rx.dropped_chunks == 2                   # two 256-byte chunks fit in 600
    said = rig.run(outs)
    assert [s.query_id for s in states(said) if s.query_id] == [3]
    assert rig.store.recs[(DEV, "r1")].held == RangeSet.of([(0, 512)])


def test_forgotten_views_are_reloaded_from_the_store() -> None:
    rig = accepted_rig(idle_forget_s=10.0)
    rig.send(UP_CHUNK, chunk(0, 100))
    rig.rx.tick(NOW + 11)
    assert rig.rx.cached == 0
    said = rig.send(UP_CHUNK, chunk(100, 200))
    assert states(said)[-1].held == RangeSet.of([(0, 200)])
