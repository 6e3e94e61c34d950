"""Wire format: round trips, strict rejection, and no crash on any input."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.custody.errors import MalformedMessage, UnsupportedVersion
from edge.custody.messages import (
    PHASE_RECEIVING,
    PHASE_VERIFYING,
    Chunk,
    ChunkCorrupt,
    Offer,
    ReceiptDelivery,
    Reject,
    State,
    chunk_header_size,
    decode_down,
    decode_up,
    encode_chunk,
    encode_offer,
    encode_reject,
    encode_state,
    parse_topic,
    subscription,
    topic,
)
from edge.custody.ranges import RangeSet

DEV = "kec-3171-01"
T_OFFER = f"edge/{DEV}/up/custody/offer"
T_CHUNK = f"edge/{DEV}/up/custody/chunk"
T_STATE = f"edge/{DEV}/down/custody/state"
T_REJECT = f"edge/{DEV}/down/custody/reject"

rids = st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True)
offers = st.builds(Offer, rids, st.integers(0, 2**64 - 1), st.integers(0, 255),
                   st.integers(0, 2**63 - 1), st.binary(min_size=32, max_size=32),
                   st.binary(min_size=1, max_size=2000), st.integers(0, 2**32 - 1))
held = st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 10**6)).map(
    lambda t: (t[0], t[0] + t[1])), max_size=20).map(RangeSet.of)
states = st.builds(State, rids, st.integers(0, 2**32 - 1),
                   st.sampled_from([0, PHASE_RECEIVING, PHASE_VERIFYING]), held,
                   st.integers(0, 2**32 - 1))


def test_topics_follow_the_agreed_tree() -> None:
    assert topic(DEV, "up", "chunk") == T_CHUNK
    assert topic(DEV, "down", "receipt") == f"edge/{DEV}/down/custody/receipt"
    assert subscription("up", share="central") == "$share/central/edge/+/up/custody/#"
    assert subscription("down", DEV) == f"edge/{DEV}/down/custody/#"
    assert parse_topic(T_STATE) == (DEV, "down", "state")
    with pytest.raises(ValueError):
        topic(DEV, "up", "receipt")


@pytest.mark.parametrize("bad", [
    "edge/KEC/up/custody/offer",                 # uppercase device id
    f"edge/{DEV}/up/custody/receipt",            # receipts only go down
    f"edge/{DEV}/down/custody/chunk",
    f"edge/{DEV}/up/custody/offer/extra",
    f"edge/{DEV}/up/status",
    "edge/kec-1\n/up/custody/offer",
])
def test_bad_topics_are_rejected(bad: str) -> None:
    with pytest.raises(MalformedMessage):
        parse_topic(bad)


@given(offers)
def test_offer_round_trip(m: Offer) -> None:
    assert decode_up(T_OFFER, encode_offer(m)) == (DEV, m)


@given(rids, st.integers(0, 2**32 - 1), st.integers(0, 2**40), st.binary(min_size=1,
                                                                         max_size=3000))
def test_chunk_round_trip_and_header_size(rid: str, gen: int, off: int, data: bytes) -> None:
    frame = encode_chunk(rid, gen, off, data)
    assert len(frame) == chunk_header_size(rid) + len(data)
    assert decode_up(T_CHUNK, frame) == (DEV, Chunk(rid, gen, off, data))


@given(states)
def test_state_round_trip(m: State) -> None:
    assert decode_down(T_STATE, encode_state(m)) == (DEV, m)


@given(rids, st.from_regex(r"[a-z0-9_]{1,20}(\.[a-z0-9_]{1,20}){0,2}", fullmatch=True),
       st.text(max_size=300))
def test_reject_round_trip(rid: str, reason: str, detail: str) -> None:
    _, got = decode_down(T_REJECT, encode_reject(Reject(rid, reason, detail)))
    assert got == Reject(rid, reason, detail)


def test_long_reject_detail_is_cut_on_a_character_boundary() -> None:
    _, got = decode_down(T_REJECT, encode_reject(Reject("r", "x.y", "é" * 2000)))
    assert isinstance(got, Reject) and got.detail == "é" * 512


def test_a_128_KiB_chunk_costs_a_small_fixed_header_not_base64() -> None:
    data = bytes(128 * 1024 - chunk_header_size("20240501-0001.rec"))
    assert len(encode_chunk("20240501-0001.rec", 0, 0, data)) == 128 * 1024


def _offer_bytes() -> bytes:
    return encode_offer(Offer("rec-1", 7, 0, 1000, b"\x11" * 32, b"{}", 5))


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\0", "trailing"),
    (lambda b: b"XX" + b[2:], "magic"),
    (lambda b: b[:3] + b"\x02" + b[4:], "type"),
    (lambda b: b[:4] + b"\x00" + b[5:], "recording id"),           # empty id
    (lambda b: b[:5] + b"re/-1" + b[10:], "recording id"),         # '/' not allowed
])
def test_malformed_offers_say_why(mutate: object, needle: str) -> None:
    with pytest.raises(MalformedMessage, match=needle):
        decode_up(T_OFFER, mutate(_offer_bytes()))  # type: ignore[operator]


def test_other_versions_are_named_not_guessed() -> None:
    b = _offer_bytes()
    with pytest.raises(UnsupportedVersion, match="version 2"):
        decode_up(T_OFFER, b[:2] + b"\x02" + b[3:])


def test_offer_on_the_chunk_topic_is_refused() -> None:
    with pytest.raises(MalformedMessage, match="type 0x01"):
        decode_up(T_CHUNK, _offer_bytes())


def test_chunk_with_wrong_crc_is_corrupt() -> None:
    frame = bytearray(encode_chunk("r", 0, 0, b"hello"))
    frame[-1] ^= 1
    with pytest.raises(ChunkCorrupt) as e:
        decode_up(T_CHUNK, bytes(frame))
    assert e.value.key == "custody.chunk_corrupt"


def test_empty_chunk_is_refused() -> None:
    head = b"EC\x01\x02" + b"\x01r" + struct.pack(">IQI", 0, 0, zlib.crc32(b""))
    with pytest.raises(MalformedMessage, match="chunk data of 0 bytes"):
        decode_up(T_CHUNK, head)


def test_state_ranges_must_be_canonical() -> None:
    good = encode_state(State("r", 0, PHASE_RECEIVING, RangeSet.of([(0, 5), (10, 20)])))
    head, body = good[:-32], good[-32:]
    swapped = head + body[16:] + body[:16]
    with pytest.raises(MalformedMessage, match="range 1"):
        decode_down(T_STATE, swapped)


@given(st.sampled_from([T_OFFER, T_CHUNK, T_STATE, T_REJECT,
                        f"edge/{DEV}/down/custody/receipt", "edge/x/y"]),
       st.binary(max_size=300))
def test_garbage_never_raises_anything_but_malformed(t: str, payload: bytes) -> None:
    try:
        if "/up/" in t:
            decode_up(t, payload)
        else:
            decode_down(t, payload)
    except MalformedMessage:
        pass


@given(offers, st.data())
def test_every_truncation_of_a_valid_offer_is_refused(m: Offer, data: st.DataObject) -> None:
    b = encode_offer(m)
    cut = data.draw(st.integers(0, len(b) - 1))
    with pytest.raises(MalformedMessage):
        decode_up(T_OFFER, b[:cut])


def test_receipt_payload_is_passed_through() -> None:
    assert decode_down(f"edge/{DEV}/down/custody/receipt", b"abc") == (DEV, ReceiptDelivery(b"abc"))
