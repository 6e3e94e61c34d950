"""Sender machine, one event at a time: order, window, timers, receipts."""

from __future__ import annotations

import hashlib
import random

import pytest

from edge.custody.messages import (
    PHASE_RECEIVING,
    PHASE_UNKNOWN,
    Alert,
    Offer,
    Publish,
    Reject,
    State,
    chunk_header_size,
    decode_up,
    encode_reject,
    encode_state,
)
from edge.custody.ranges import RangeSet
from edge.custody.receipt import sign_receipt
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

from .helpers import OTHER_RECEIPT_KEY, RECEIPT_KEY, make_manifest

DEV = "kec-3171-01"
DOWN = f"edge/{DEV}/down/custody/"
CFG = SenderConfig(max_payload=256, window_chunks=3, max_open=1, offer_timeout_s=10.0,
                   progress_timeout_s=20.0, receipt_timeout_s=30.0, backoff_factor=2.0,
                   backoff_max_s=100.0, jitter=0.0, max_verify_failures=2, park_s=500.0)


def rec(rid: str, size: int, seq: int, priority: int = 1) -> Recording:
    data = bytes([seq % 256]) * size
    return Recording(rid, seq, priority, size, hashlib.sha256(data).digest(),
                     make_manifest(DEV, rid, data))


def sender(*recs: Recording, cfg: SenderConfig = CFG) -> tuple[Sender, list[SenderOutput]]:
    s = Sender(DEV, RECEIPT_KEY.public_key(), cfg, rng=random.Random(1))
    for r in recs:
        assert s.enqueue(r, 0.0) == []          # nothing goes out while the link is down
    return s, s.link_up(0.0)


def offers(outs: list[SenderOutput]) -> list[Offer]:
    got = []
    for o in outs:
        if isinstance(o, Publish) and o.topic.endswith("/offer"):
            _, m = decode_up(o.topic, o.payload)
            assert isinstance(m, Offer)
            got.append(m)
    return got


def chunks(outs: list[SenderOutput]) -> list[tuple[str, int, int]]:
    return [(o.recording_id, o.offset, o.offset + o.length) for o in outs
            if isinstance(o, PublishChunk)]


def state(rid: str, held: list[tuple[int, int]], q: int = 0, gen: int = 0,
          phase: int = PHASE_RECEIVING) -> tuple[str, bytes]:
    return DOWN + "state", encode_state(State(rid, gen, phase, RangeSet.of(held), q))


def receipt_for(r: Recording, **kw: object) -> tuple[str, bytes]:
    args: dict[str, object] = dict(device_id=DEV, recording_id=r.recording_id,
                                   sealed_sha256=r.sealed_sha256, sealed_size=r.sealed_size,
                                   received_at_ms=5, receiver_id="rx-a")
    args.update(kw)
    key = args.pop("key", RECEIPT_KEY)
    return DOWN + "receipt", sign_receipt(key, **args)  # type: ignore[arg-type]


PIECE = 256 - chunk_header_size("a")


def test_offer_first_then_a_window_of_grid_aligned_chunks() -> None:
    a = rec("a", PIECE * 5 + 7, 1)
    s, out = sender(a)
    (o,) = offers(out)
    assert (o.recording_id, o.sealed_size, o.sealed_sha256) == ("a", a.sealed_size,
                                                                 a.sealed_sha256)
    out = s.receive(*state("a", [], q=o.query_id), 1.0)
    assert chunks(out) == [("a", i * PIECE, (i + 1) * PIECE) for i in range(3)]
    # Acks slide the window by exactly what they cover.
    out = s.receive(*state("a", [(0, PIECE)]), 2.0)
    assert chunks(out) == [("a", 3 * PIECE, 4 * PIECE)]
    out = s.receive(*state("a", [(0, 4 * PIECE)]), 3.0)
    assert chunks(out) == [("a", 4 * PIECE, 5 * PIECE), ("a", 5 * PIECE, 5 * PIECE + 7)]


def test_urgent_items_pass_bulk_but_bulk_keeps_seq_order() -> None:
    bulk1, bulk2, urgent = rec("b1", 10, 1), rec("b2", 10, 2), rec("u", 10, 9, priority=0)
    s, out = sender(bulk2, bulk1, urgent)
    assert [o.recording_id for o in offers(out)] == ["u"]        # max_open = 1
    s.receive(*receipt_for(urgent), 1.0)
    out = s.receive(*state("u", [(0, 10)]), 1.0)   # late ack for a finished item: ignored
    assert out == []
    assert list(s.progress()) == ["b2", "b1"]
    out = s.tick(1.0)
    assert [o.recording_id for o in offers(s.link_up(1.0))] == ["b1"]


def test_resume_sends_only_what_the_receiver_lacks() -> None:
    a = rec("a", PIECE * 4, 1)
    s, out = sender(a)
    q = offers(out)[0].query_id
    out = s.receive(*state("a", [(0, PIECE), (2 * PIECE, 3 * PIECE)], q=q), 1.0)
    assert chunks(out) == [("a", PIECE, 2 * PIECE), ("a", 3 * PIECE, 4 * PIECE)]


def test_silence_leads_to_a_probe_and_only_lost_chunks_are_resent() -> None:
    a = rec("a", PIECE * 6, 1)
    s, out = sender(a)
    out = s.receive(*state("a", [], q=offers(out)[0].query_id), 0.0)
    assert len(chunks(out)) == 3
    assert s.next_deadline() == 20.0                 # progress timeout
    assert s.tick(19.9) == []
    out = s.tick(20.0)
    (probe,) = offers(out)
    assert chunks(out) == []                          # no new data while probing
    # The answer says chunk 1 arrived, 0 and 2 did not (dropped after PUBACK).
    out = s.receive(*state("a", [(PIECE, 2 * PIECE)], q=probe.query_id), 21.0)
    assert chunks(out) == [("a", 0, PIECE), ("a", 2 * PIECE, 3 * PIECE),
                           ("a", 3 * PIECE, 4 * PIECE)]


def test_unanswered_offers_back_off_exponentially_up_to_the_cap() -> None:
    s, _out = sender(rec("a", 10, 1))
    times, now = [], 0.0
    for _ in range(6):
        deadline = s.next_deadline()
        assert deadline is not None
        times.append(deadline - now)
        now = deadline
        assert len(offers(s.tick(now))) == 1
    assert times == [10.0, 20.0, 40.0, 80.0, 100.0, 100.0]


def test_jitter_spreads_retries_within_bounds() -> None:
    cfg = SenderConfig(offer_timeout_s=10.0, jitter=0.2)
    delays = set()
    for seed in range(20):
        s = Sender(DEV, RECEIPT_KEY.public_key(), cfg, rng=random.Random(seed))
        s.enqueue(rec("a", 10, 1), 0.0)
        s.link_up(0.0)
        d = s.next_deadline()
        assert d is not None and 8.0 <= d <= 12.0
        delays.add(d)
    assert len(delays) > 10


def test_valid_receipt_frees_the_recording_even_before_any_chunk() -> None:
    a = rec("a", 10_000, 1)
    s, _ = sender(a)
    out = s.receive(*receipt_for(a), 1.0)          # central already had it
    (r,) = [o for o in out if isinstance(o, Receipted)]
    assert r.recording_id == "a" and r.receipt.sealed_sha256 == a.sealed_sha256
    assert s.progress() == {}


@pytest.mark.parametrize("forgery", [dict(key=OTHER_RECEIPT_KEY), dict(device_id="kec-0000-99"),
                                     dict(sealed_sha256=b"\1" * 32), dict(sealed_size=11)])
def test_forged_receipts_change_nothing(forgery: dict[str, object]) -> None:
    a = rec("a", 10, 1)
    s, _ = sender(a)
    out = s.receive(*receipt_for(a, **forgery), 1.0)
    assert not any(isinstance(o, Receipted) for o in out)
    assert next(o.key for o in out if isinstance(o, Alert)).startswith("receipt.")
    assert "a" in s.progress()


def test_receipts_that_never_verify_park_the_recording_and_free_its_slot() -> None:
    """E.g. central rotated its receipt key and this device was not given the new one: the
    recording stays in the spool (nothing released) but no longer blocks the others."""
    a, b = rec("a", 10, 1), rec("b", 10, 2)
    s, out = sender(a, b)                                # max_open = 1: only "a" is offered
    assert [o.recording_id for o in offers(out)] == ["a"]
    out = s.receive(*receipt_for(a, key=OTHER_RECEIPT_KEY), 1.0)
    assert not any(isinstance(o, GaveUp) for o in out)   # one bad receipt: keep waiting
    out = s.receive(*receipt_for(a, key=OTHER_RECEIPT_KEY), 2.0)
    (g,) = [o for o in out if isinstance(o, GaveUp)]
    assert g.key == "receipt.unknown_key" and g.retry_at == 2.0 + CFG.park_s
    assert not any(isinstance(o, Receipted) for o in out)
    assert [o.recording_id for o in offers(out)] == ["b"]  # the slot went to "b"
    assert s.progress()["a"][0] == "parked"


def test_generation_bump_checks_the_local_copy_then_sends_everything_again() -> None:
    a = rec("a", PIECE * 2, 1)
    s, out = sender(a)
    s.receive(*state("a", [(0, 2 * PIECE)], q=offers(out)[0].query_id), 1.0)
    assert s.progress()["a"][0] == "awaiting_receipt"
    out = s.receive(*state("a", [], gen=1), 2.0)       # central discarded it
    assert [type(o) for o in out if not isinstance(o, Alert)] == [VerifyLocal]
    out = s.local_verified("a", True, 3.0)
    assert chunks(out) == [("a", 0, PIECE), ("a", PIECE, 2 * PIECE)]
    assert s.receive(*state("a", [(0, PIECE)], gen=0), 4.0) == []   # stale generation


def test_corrupt_local_copy_gives_up_for_good() -> None:
    a = rec("a", 10, 1)
    s, out = sender(a)
    s.receive(*state("a", [(0, 10)], q=offers(out)[0].query_id), 1.0)
    s.receive(*state("a", [], gen=1), 2.0)
    (g,) = s.local_verified("a", False, 3.0)
    assert isinstance(g, GaveUp) and g.key == "custody.local_corrupt" and g.retry_at is None
    assert s.progress() == {}


def test_reject_parks_the_recording_and_retries_after_park_s() -> None:
    a = rec("a", 10, 1)
    s, out = sender(a)
    out = s.receive(DOWN + "reject", encode_reject(Reject("a", "offer.conflict", "dup")), 1.0)
    (g,) = [o for o in out if isinstance(o, GaveUp)]
    assert g.key == "custody.rejected.offer.conflict" and g.retry_at == 501.0
    assert s.tick(500.0) == []
    assert len(offers(s.tick(501.0))) == 1


def test_too_many_central_hash_failures_park_the_recording() -> None:
    a = rec("a", 10, 1)
    s, out = sender(a)
    s.receive(*state("a", [], q=offers(out)[0].query_id), 1.0)
    s.receive(*state("a", [], gen=1), 2.0)
    s.local_verified("a", True, 2.0)
    out = s.receive(*state("a", [], gen=2), 3.0)
    assert [o.key for o in out if isinstance(o, GaveUp)] == ["custody.verify_failed"]


def test_unknown_state_means_offer_again() -> None:
    a = rec("a", PIECE * 2, 1)
    s, out = sender(a)
    s.receive(*state("a", [], q=offers(out)[0].query_id), 1.0)
    out = s.receive(*state("a", [], phase=PHASE_UNKNOWN), 2.0)
    assert len(offers(out)) == 1 and chunks(out) == []


def test_link_down_silences_everything_and_link_up_asks_again() -> None:
    a = rec("a", PIECE * 4, 1)
    s, out = sender(a)
    s.receive(*state("a", [], q=offers(out)[0].query_id), 1.0)
    s.link_down(2.0)
    assert s.tick(1000.0) == []
    assert s.receive(*state("a", [(0, PIECE)]), 1001.0) == []
    out = s.link_up(1002.0)
    assert len(offers(out)) == 1 and chunks(out) == []


def test_adapter_short_read_is_an_error_not_a_short_chunk() -> None:
    a = rec("a", PIECE * 2, 1)
    s, out = sender(a)
    out = s.receive(*state("a", [], q=offers(out)[0].query_id), 1.0)
    first = out[0]
    assert isinstance(first, PublishChunk)
    with pytest.raises(ValueError, match="shorter than offered"):
        first.frame(b"x")


def test_messages_for_other_devices_or_garbage_are_alerts() -> None:
    s, _ = sender(rec("a", 10, 1))
    assert [o.key for o in s.receive("edge/kec-9/down/custody/state", b"x", 1.0)
            if isinstance(o, Alert)] == ["custody.malformed"]
    topic, payload = state("a", [])
    assert [o.key for o in s.receive(topic.replace(DEV, "kec-3171-02"), payload, 1.0)
            if isinstance(o, Alert)] == ["custody.wrong_device"]


def test_enqueue_twice_is_idempotent_and_conflicts_are_flagged() -> None:
    a = rec("a", 10, 1)
    s, _ = sender(a)
    assert s.enqueue(a, 1.0) == []
    out = s.enqueue(rec("a", 11, 1), 1.0)
    assert [o.key for o in out if isinstance(o, Alert)] == ["custody.enqueue_conflict"]


def test_answer_to_a_query_replaces_acks_so_lost_central_bytes_are_resent() -> None:
    a = rec("a", PIECE * 2, 1)
    s, out = sender(a)
    s.receive(*state("a", [(0, 2 * PIECE)], q=offers(out)[0].query_id), 1.0)
    assert s.progress()["a"][0] == "awaiting_receipt"
    (query,) = offers(s.tick(31.0))                    # no receipt: ask again
    out = s.receive(*state("a", [(0, PIECE)], q=query.query_id), 32.0)
    assert chunks(out) == [("a", PIECE, 2 * PIECE)]
    # A plain progress ack never takes bytes away.
    s2, out2 = sender(a)
    s2.receive(*state("a", [(0, 2 * PIECE)], q=offers(out2)[0].query_id), 1.0)
    assert chunks(s2.receive(*state("a", [(0, PIECE)]), 2.0)) == []
