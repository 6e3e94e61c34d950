"""Sender and receivers joined by an in-memory link that drops, duplicates and reorders
messages, with crashes of either side at arbitrary points.

Whatever happens, once the link behaves again: every recording is committed centrally
exactly once with the right bytes, and a device deletes a recording only with a valid receipt
(``Device._receipted`` checks the receipt and the central store on every deletion).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.custody.messages import Chunk, decode_up, encode_chunk, parse_topic
from edge.custody.receipt import sign_receipt
from edge.custody.receiver import Receiver, ReceiverConfig, VerifyRecording, VerifyResult
from edge.custody.sender import Sender, SenderConfig

from .helpers import OTHER_RECEIPT_KEY, RECEIPT_KEY, Central, Device, Link, MemoryStore

DEVICES = ("kec-3171-01", "kec-3171-02")
SENDER_CFG = SenderConfig(max_payload=256, window_chunks=4, max_open=2, offer_timeout_s=5.0,
                          progress_timeout_s=10.0, receipt_timeout_s=5.0, backoff_max_s=40.0)
RECEIVER_CFG = ReceiverConfig("rx-a", max_pending_bytes=600, idle_forget_s=30.0,
                              op_timeout_s=20.0)


class World:
    def __init__(self, recordings: list[tuple[int, int, int, int]], *, sync: bool) -> None:
        self.now = 1000.0
        self.store = MemoryStore()
        self.link = Link()
        self.centrals = [Central(self.store, self.link, RECEIVER_CFG, sync=sync),
                         Central(self.store, self.link,
                                 replace(RECEIVER_CFG, receiver_id="rx-b"), sync=sync)]
        self.devices = {d: Device(d, self.link, SENDER_CFG, self.store, seed=i * 100)
                        for i, d in enumerate(DEVICES)}
        # (device index, size, priority, arrival order) → recordings that arrive over time
        self.arrivals: list[tuple[str, str, bytes, int, int]] = []
        for n, (dev, size, prio, _) in enumerate(sorted(recordings, key=lambda r: r[3])):
            data = hashlib.sha256(f"{n}".encode()).digest() * (size // 32 + 1)
            self.arrivals.append((DEVICES[dev], f"r{n % 3}.{n}", data[:size], n, prio))
        self.expected: dict[tuple[str, str], bytes] = {
            (d, rid): data for d, rid, data, _, _ in self.arrivals}
        self.tampered = False
        self.forged = False
        for dev in self.devices.values():
            dev.start(self.now)
        for _ in range(sum(1 for r in recordings if r[3] == 0)):
            self._arrive()         # already in the spool at start; the others come later

    # ---------------------------------------------------------------- one step of chaos

    def apply(self, op: tuple[str, int, int]) -> None:
        kind, a, b = op
        up, down = self.link.up, self.link.down
        if kind == "up" and up:
            t, p = up.pop(a % len(up))
            self.centrals[b % 2].receive(t, p, self.now)
        elif kind == "down" and down:
            self._deliver_down(down.pop(a % len(down)))
        elif kind == "drop_up" and up:
            up.pop(a % len(up))
        elif kind == "drop_down" and down:
            down.pop(a % len(down))
        elif kind == "dup_up" and up:
            up.append(up[a % len(up)])
        elif kind == "dup_down" and down:
            down.append(down[a % len(down)])
        elif kind in ("result", "lose_result"):
            c = self.centrals[b % 2]
            if c.results:
                c.run_result(a, report=kind == "result")
        elif kind == "tamper_up" and up:
            # An attacker (or a bug) changes chunk bytes and fixes the CRC to match.
            i = a % len(up)
            _, m = decode_up(*up[i])
            if isinstance(m, Chunk):
                evil = bytes([m.data[0] ^ 0x5A]) + m.data[1:]
                up[i] = (up[i][0], encode_chunk(m.recording_id, m.generation, m.offset, evil))
                self.tampered = True
        elif kind == "forge_down":
            self._forge(a, b)
        elif kind == "tick":
            self.now += a / 2
            self._tick()
        elif kind == "arrive" and self.arrivals:
            self._arrive()
        elif kind == "restart_sender":
            dev = self.devices[DEVICES[b % 2]]
            dev.restart(self.now)
        elif kind == "restart_receiver":
            self.centrals[b % 2].restart()
        elif kind == "link_flap":
            dev = self.devices[DEVICES[b % 2]]
            dev.handle(dev.machine.link_down(self.now), self.now)
            dev.start(self.now)

    def _forge(self, a: int, b: int) -> None:
        self.forged = True
        """Inject a receipt that must not be believed: wrong key, or a genuine key naming
        another recording's hash or another device."""
        dev = self.devices[DEVICES[b % 2]]
        if not dev.spool:
            return
        rid = sorted(dev.spool)[a % len(dev.spool)]
        rec, data = dev.spool[rid]
        key, device_id, sha = [(OTHER_RECEIPT_KEY, dev.device_id, rec.sealed_sha256),
                               (RECEIPT_KEY, dev.device_id, hashlib.sha256(b"x").digest()),
                               (RECEIPT_KEY, DEVICES[(b + 1) % 2], rec.sealed_sha256)][a % 3]
        forged = sign_receipt(key, device_id=device_id, recording_id=rid, sealed_sha256=sha,
                              sealed_size=len(data), received_at_ms=1, receiver_id="rx-evil")
        self.link.down.append((f"edge/{dev.device_id}/down/custody/receipt", forged))

    def _arrive(self) -> None:
        d, rid, data, seq, prio = self.arrivals.pop(0)
        self.devices[d].add(rid, data, self.now, seq=seq, priority=prio)

    def _deliver_down(self, msg: tuple[str, bytes]) -> None:
        device_id, _, _ = parse_topic(msg[0])
        self.devices[device_id].receive(msg[0], msg[1], self.now)

    def _tick(self) -> None:
        for dev in self.devices.values():
            dev.tick(self.now)
        for c in self.centrals:
            c.tick(self.now)

    # ---------------------------------------------------------------- the link heals

    def drain(self, order: str = "urd", max_rounds: int = 2000) -> None:
        """Deliver everything, in FIFO order per queue, serving the queues in ``order``
        (u: uplink, r: receivers' pending actions, d: downlink), and run timers."""
        while self.arrivals:
            self._arrive()
        for n in range(max_rounds):
            for q in order:
                if q == "u" and self.link.up:
                    t, p = self.link.up.pop(0)
                    self.centrals[n % 2].receive(t, p, self.now)
                    break
                if q == "r" and any(c.results for c in self.centrals):
                    next(c for c in self.centrals if c.results).run_result(0)
                    break
                if q == "d" and self.link.down:
                    self._deliver_down(self.link.down.pop(0))
                    break
            else:
                if all(not d.spool for d in self.devices.values()):
                    return
                self._advance()
        raise AssertionError(f"no convergence after {max_rounds} steps: {self.progress()}")

    def _advance(self) -> None:
        """Nothing to deliver: jump to the next timer."""
        deadlines = [t for m in self.machines() if (t := m.next_deadline()) is not None]
        assert deadlines, f"stuck with nothing scheduled: {self.progress()}"
        self.now = max(self.now, min(deadlines))
        self._tick()

    def machines(self) -> list[Sender | Receiver]:
        return [d.machine for d in self.devices.values()] + [c.machine for c in self.centrals]

    def progress(self) -> dict[str, object]:
        return {d: dev.machine.progress() for d, dev in self.devices.items()}

    def check(self) -> None:
        for dev in self.devices.values():
            # Only tampering, or receipts that keep failing verification (forgeries), may park
            # a recording for a while; it still lands afterwards, released by a real receipt.
            assert all((g.key == "custody.verify_failed" and self.tampered)
                       or (g.key.startswith("receipt.") and self.forged and
                           g.retry_at is not None)
                       for g in dev.gave_up)
            assert not dev.spool
        committed = {k for k, s in self.store.recs.items() if s.receipt is not None}
        assert committed == set(self.expected)
        for key, data in self.expected.items():
            assert self.store.commits[key] == 1
            assert self.store.recs[key].final == data
            assert self.devices[key[0]].receipted[key[1]] == self.store.recs[key].receipt


KINDS = ["up"] * 6 + ["down"] * 4 + ["result"] * 4 + [
    "drop_up", "drop_down", "dup_up", "dup_down", "tick", "tick", "arrive", "arrive",
    "restart_sender", "restart_receiver", "link_flap", "lose_result", "tamper_up",
    "forge_down"]
ops = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 60), st.integers(0, 1)),
               min_size=20, max_size=150)
# (device index, sealed size, priority, 0 = in the spool at start / 1.. = arrives later)
recordings = st.lists(st.tuples(st.integers(0, 1), st.integers(1, 1200), st.integers(0, 1),
                                st.integers(0, 2)), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recordings=recordings, ops=ops, sync=st.booleans(),
       order=st.sampled_from(["urd", "udr", "rud", "rdu", "dur", "dru"]))
def test_chaos_then_heal_stores_each_recording_exactly_once(
        recordings: list[tuple[int, int, int, int]], ops: list[tuple[str, int, int]],
        sync: bool, order: str) -> None:
    world = World(recordings, sync=sync)
    for op in ops:
        world.apply(op)
    world.drain(order)
    world.check()


# ------------------------------------------------------------------ named scenarios


def _run(world: World, *, until_empty: bool = True) -> None:
    world.drain()
    if until_empty:
        world.check()


def test_silently_dropped_chunks_are_resent_and_nothing_else() -> None:
    """Mosquitto PUBACKs then drops QoS 1 messages to a slow subscriber: only acks count."""
    world = World([(0, 2000, 1, 0)], sync=True)
    dev = world.devices[DEVICES[0]]
    world.apply(("up", 0, 0))          # the offer
    world.apply(("down", 0, 0))        # its State: the window opens
    sent = [m for m in world.link.up if m[0].endswith("/chunk")]
    assert len(sent) == SENDER_CFG.window_chunks
    lost = world.link.up.pop(1)        # the broker "delivers" all but this one
    while world.link.up or world.link.down:
        while world.link.up:
            world.apply(("up", 0, 0))
        while world.link.down:
            world.apply(("down", 0, 0))
    before = world.store.bytes_written
    _run(world)
    _, lost_chunk = decode_up(*lost)
    assert isinstance(lost_chunk, Chunk)
    # Everything after the gap went through once; the gap was sent again, and the total
    # written equals the file size: nothing was stored twice.
    assert world.store.bytes_written == 2000
    assert world.store.bytes_written - before >= len(lost_chunk.data)
    assert dev.receipted


def test_resume_after_both_sides_restart_sends_only_missing_bytes() -> None:
    world = World([(0, 1800, 1, 0)], sync=True)
    dev = world.devices[DEVICES[0]]
    for _ in range(6):                 # part of the file gets through
        world.apply(("up", 0, 0))
        world.apply(("down", 0, 0))
    held_before = world.store.recs[(DEVICES[0], "r0.0")].held.total
    assert 0 < held_before < 1800
    world.link.up.clear()
    world.link.down.clear()
    dev.restart(world.now)
    world.centrals[0].restart()
    world.centrals[1].restart()
    resent = []
    while world.link.up or world.link.down or dev.spool:
        if world.link.up:
            t, p = world.link.up.pop(0)
            _, m = decode_up(t, p)
            if isinstance(m, Chunk):
                resent.append((m.offset, m.end))
            world.centrals[0].receive(t, p, world.now)
        elif world.link.down:
            world.apply(("down", 0, 0))
        else:
            world.now = dev.machine.next_deadline() or world.now
            world._tick()
    world.check()
    held = world.store.recs[(DEVICES[0], "r0.0")]
    assert held.final is not None
    # Nothing already held before the restart was sent again.
    assert sum(e - s for s, e in resent) == 1800 - held_before


def test_chunk_tampered_with_matching_crc_is_discarded_and_sent_again() -> None:
    """Bytes that pass the CRC but break the SHA-256 are thrown away whole, never committed."""
    world = World([(0, 1000, 1, 0)], sync=True)
    tampered = False
    for _ in range(400):
        if world.link.up and not tampered:
            t, p = world.link.up[0]
            _, m = decode_up(t, p)
            if isinstance(m, Chunk) and m.offset > 0:
                evil = bytes([m.data[0] ^ 0xFF]) + m.data[1:]
                world.link.up[0] = (t, encode_chunk(m.recording_id, m.generation, m.offset,
                                                    evil))
                tampered = True
        if world.link.up:
            world.apply(("up", 0, 0))
        elif world.link.down:
            world.apply(("down", 0, 0))
        elif world.devices[DEVICES[0]].spool:
            world.now = world.devices[DEVICES[0]].machine.next_deadline() or world.now
            world._tick()
        else:
            break
    world.check()
    key = (DEVICES[0], "r0.0")
    assert tampered
    assert world.store.recs[key].generation == 1           # one generation thrown away
    assert [a.key for a in world.centrals[0].alerts + world.centrals[1].alerts] == [
        "custody.hash_mismatch"]
    assert "custody.central_hash_mismatch" in [a.key for a in world.devices[DEVICES[0]].alerts]


def test_chunk_with_broken_crc_is_dropped_before_the_store() -> None:
    world = World([(0, 600, 1, 0)], sync=True)
    world.apply(("up", 0, 0))
    world.apply(("down", 0, 0))
    t, p = world.link.up[0]
    world.link.up[0] = (t, p[:-1] + bytes([p[-1] ^ 1]))
    world.apply(("up", 0, 0))
    assert world.store.bytes_written == 0
    assert [a.key for a in world.centrals[0].alerts] == ["custody.chunk_corrupt"]
    _run(world)
    assert world.store.recs[(DEVICES[0], "r0.0")].generation == 0


def test_local_copy_corrupt_gives_up_without_a_receipt() -> None:
    world = World([(0, 500, 1, 0)], sync=True)
    dev = world.devices[DEVICES[0]]
    # Every verification at central fails: the device re-hashes its own copy, which is bad.
    for c in world.centrals:
        c.tamper_verify = lambda a: VerifyResult(False, "hash_mismatch", "forced")
    rec, data = dev.spool["r0.0"]
    dev.spool["r0.0"] = (rec, b"\0" + data[1:])   # the SD card flipped a byte after sealing
    for _ in range(200):
        if world.link.up:
            world.apply(("up", 0, 0))
        elif world.link.down:
            world.apply(("down", 0, 0))
        else:
            break
    assert [g.key for g in dev.gave_up] == ["custody.local_corrupt"]
    assert dev.gave_up[0].retry_at is None
    assert "r0.0" in dev.spool and not dev.receipted
    assert world.store.commits == {}


def test_repeated_central_hash_failures_park_the_recording() -> None:
    world = World([(0, 300, 1, 0)], sync=True)
    dev = world.devices[DEVICES[0]]

    def always_bad(a: VerifyRecording) -> VerifyResult:
        return VerifyResult(False, "hash_mismatch", "forced")

    for c in world.centrals:
        c.tamper_verify = always_bad
    for _ in range(400):
        if world.link.up:
            world.apply(("up", 0, 0))
        elif world.link.down:
            world.apply(("down", 0, 0))
        else:
            break
    assert [g.key for g in dev.gave_up] == ["custody.verify_failed"]
    assert dev.machine.progress()["r0.0"][0] == "parked"
    # Central fixed: after park_s the recording is offered again and lands.
    for c in world.centrals:
        c.tamper_verify = None
    world.now += SENDER_CFG.park_s
    world._tick()
    dev.gave_up.clear()
    _run(world)


@pytest.mark.parametrize("forgery", ["wrong_key", "other_recording", "other_device",
                                     "wrong_hash", "bit_flip"])
def test_forged_receipts_never_free_the_spool(forgery: str) -> None:
    world = World([(0, 400, 1, 0), (0, 300, 1, 1)], sync=True)
    world._arrive()                    # the second one arrives now
    dev = world.devices[DEVICES[0]]
    data = dev.spool["r0.0"][1]
    sha = hashlib.sha256(data).digest()
    args = dict(device_id=DEVICES[0], recording_id="r0.0", sealed_sha256=sha,
                sealed_size=len(data), received_at_ms=1, receiver_id="rx-evil")
    if forgery == "wrong_key":
        receipt = sign_receipt(OTHER_RECEIPT_KEY, **args)  # type: ignore[arg-type]
    elif forgery == "other_recording":
        receipt = sign_receipt(RECEIPT_KEY, **{**args, "recording_id": "r1.1"})  # type: ignore[arg-type]
    elif forgery == "other_device":
        receipt = sign_receipt(RECEIPT_KEY, **{**args, "device_id": DEVICES[1]})  # type: ignore[arg-type]
    elif forgery == "wrong_hash":
        receipt = sign_receipt(RECEIPT_KEY, **{**args, "sealed_sha256": os.urandom(32)})  # type: ignore[arg-type]
    else:
        good = bytearray(sign_receipt(RECEIPT_KEY, **args))  # type: ignore[arg-type]
        good[20] ^= 1
        receipt = bytes(good)
    dev.receive(f"edge/{DEVICES[0]}/down/custody/receipt", receipt, world.now)
    assert not dev.receipted and "r0.0" in dev.spool
    assert dev.alerts and dev.alerts[-1].key.startswith("receipt.")
    _run(world)   # the genuine receipt still frees it
