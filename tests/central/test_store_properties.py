"""The custody machines over the real store: the chaos of tests/custody/test_end_to_end.py
(drop, duplicate, reorder, tamper, forged receipts, lost action results, restarts of either
side) with two receivers sharing one ``CentralStore`` directory — each with its own SQLite
connection, and a receiver restart reopening the store and running recovery while the other
receiver keeps using it.

Once the link heals, every recording is committed exactly once: one final file with exactly
the device's bytes, the receipt every device holds is the stored one, and recovery finds
nothing left over.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.central.store import CentralStore
from edge.custody.messages import Chunk, decode_up
from edge.custody.receiver import ManifestRejected, ReceiverConfig, VerifyRecording, VerifyResult
from tests.custody.helpers import Central, Link, check_manifest
from tests.custody.test_end_to_end import RECEIVER_CFG, World, ops, recordings


class FileCentral(Central):
    """The in-memory receiver adapter of tests/custody, with the real store underneath."""

    def __init__(self, root: Path, link: Link, config: ReceiverConfig, *, sync: bool) -> None:
        self.root = root
        super().__init__(CentralStore(root), link, config, sync=sync)  # type: ignore[arg-type]

    @property
    def file_store(self) -> CentralStore:
        assert isinstance(self.store, CentralStore)
        return self.store

    def restart(self) -> None:
        """The process dies; its successor opens the store and recovers first."""
        self.file_store.close()
        self.store = CentralStore(self.root)  # type: ignore[assignment]
        self.file_store.recover()
        super().restart()

    def _verify(self, a: VerifyRecording) -> VerifyResult:
        claims = check_manifest(a.device_id, a.manifest)
        if isinstance(claims, ManifestRejected):
            return VerifyResult(False, claims.key, claims.detail)
        f = self.file_store.open_generation(a.device_id, a.recording_id, a.generation)
        if f is None:
            return VerifyResult(False, "hash_mismatch", "generation moved on")
        with f:
            data = f.read()
        if len(data) != a.sealed_size or hashlib.sha256(data).digest() != a.sealed_sha256:
            return VerifyResult(False, "hash_mismatch", "SHA-256 differs")
        return VerifyResult(True)


class StoreWorld(World):
    def __init__(self, root: Path, recs: list[tuple[int, int, int, int]], *,
                 sync: bool) -> None:
        super().__init__(recs, sync=sync)
        self.root = root
        for dev in self.devices.values():
            dev.store = None          # the in-memory store's cross-check does not apply
        self.centrals = [FileCentral(root, self.link, RECEIVER_CFG, sync=sync),
                         FileCentral(root, self.link, replace(RECEIVER_CFG, receiver_id="rx-b"),
                                     sync=sync)]

        self.generations: dict[tuple[str, str], int] = {}
        self.tampered_gens: set[tuple[str, str, int]] = set()
        self.receipts: dict[tuple[str, str], bytes] = {}

    def invariants(self) -> None:
        """After every step, whatever the chaos: generations never go down, a receipt never
        changes, a committed file is exactly the device's bytes, and (unless a chunk of this
        generation was tampered with) every byte the index calls held is on disk with the
        device's value."""
        central = self.centrals[0]
        assert isinstance(central, FileCentral)
        store = central.file_store
        for key, data in self.expected.items():
            rec = store.get(*key)
            if rec is None:
                continue
            assert rec.generation >= self.generations.get(key, 0)
            self.generations[key] = rec.generation
            if rec.receipt is not None:
                assert self.receipts.setdefault(key, rec.receipt) == rec.receipt
                assert store.final_path(*key).read_bytes() == data
            elif rec.held and (*key, rec.generation) not in self.tampered_gens:
                on_disk = store.partial_path(*key, rec.generation).read_bytes()
                for s, e in rec.held:
                    assert on_disk[s:e] == data[s:e]

    def apply(self, op: tuple[str, int, int]) -> None:
        kind, a, _ = op
        if kind == "tamper_up" and self.link.up:
            topic, payload = self.link.up[a % len(self.link.up)]
            device_id, msg = decode_up(topic, payload)
            if isinstance(msg, Chunk):
                self.tampered_gens.add((device_id, msg.recording_id, msg.generation))
        super().apply(op)

    def close(self) -> None:
        for c in self.centrals:
            assert isinstance(c, FileCentral)
            c.file_store.close()

    def check(self) -> None:
        for dev in self.devices.values():
            # as in tests/custody: tampering, or receipts that keep failing verification
            # (forgeries), may park a recording for a while; nothing else gives up
            assert all((g.key == "custody.verify_failed" and self.tampered)
                       or (g.key.startswith("receipt.") and self.forged
                           and g.retry_at is not None)
                       for g in dev.gave_up)
            assert not dev.spool
        with CentralStore(self.root) as store:
            committed = {(r.device_id, r.recording_id): r for r in store.committed()}
            assert set(committed) == set(self.expected)
            for (d, rid), data in self.expected.items():
                assert store.final_path(d, rid).read_bytes() == data
                assert self.devices[d].receipted[rid] == committed[(d, rid)].receipt
            store.recover()
            assert not [p for p in (self.root / "partial").rglob("*") if p.is_file()]
            finals = sorted(str(p.relative_to(self.root / "final"))
                            for p in (self.root / "final").rglob("*.seal"))
            assert finals == sorted(f"{d}/{rid}.seal" for d, rid in self.expected)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=recordings, steps=ops, sync=st.booleans(),
       order=st.sampled_from(["urd", "udr", "rud", "rdu", "dur", "dru"]))
def test_chaos_over_the_real_store_commits_each_recording_once(
        recs: list[tuple[int, int, int, int]], steps: list[tuple[str, int, int]], sync: bool,
        order: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = StoreWorld(Path(tmp) / "custody", recs, sync=sync)
        try:
            for step in steps:
                world.apply(step)
                world.invariants()
            world.drain(order)
            world.invariants()
            world.check()
        finally:
            world.close()
