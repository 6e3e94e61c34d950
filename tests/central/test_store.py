"""The central custody store: compare-and-set on the generation, held bytes written once,
first commit wins, recovery that never deletes a committed recording — on real files and a
real SQLite index."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from edge.central.store import INDEX_FILE, CentralStore
from edge.central.store.index import decode_ranges, encode_ranges
from edge.custody.ranges import RangeSet
from edge.custody.receiver import OfferRecord

D, R = "kec-3171-01", "nik-0001"
DATA = bytes(range(256)) * 40          # 10240 bytes


def offer(data: bytes = DATA, manifest: bytes = b'{"m":1}') -> OfferRecord:
    return OfferRecord(seq=7, priority=1, sealed_size=len(data),
                       sealed_sha256=hashlib.sha256(data).digest(), manifest=manifest)


@pytest.fixture
def store(tmp_path: Path) -> CentralStore:
    s = CentralStore(tmp_path / "custody")
    yield s
    s.close()


def fill(store: CentralStore, data: bytes = DATA, step: int = 4096, gen: int = 0) -> None:
    for off in range(0, len(data), step):
        store.put_chunk(D, R, gen, off, data[off:off + step])


def test_index_is_wal_with_full_sync(store: CentralStore) -> None:
    conn = sqlite3.connect(store.root / INDEX_FILE)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_unknown_recording_is_an_empty_view(store: CentralStore) -> None:
    view = store.load(D, R)
    assert view.offer is None and view.generation == 0 and not view.held
    assert view.receipt is None


def test_first_offer_wins(store: CentralStore) -> None:
    store.save_offer(D, R, offer())
    view = store.save_offer(D, R, offer(b"other" * 10))
    assert view.offer == offer()


def test_chunks_without_offer_or_of_another_generation_change_nothing(
        store: CentralStore) -> None:
    assert not store.put_chunk(D, R, 0, 0, DATA[:100]).held
    store.save_offer(D, R, offer())
    assert not store.put_chunk(D, R, 1, 0, DATA[:100]).held
    assert not store.partial_path(D, R, 1).exists()


def test_held_bytes_are_never_rewritten(store: CentralStore) -> None:
    store.save_offer(D, R, offer())
    store.put_chunk(D, R, 0, 100, DATA[100:200])
    evil = bytes(300)
    view = store.put_chunk(D, R, 0, 0, evil)           # overlaps the held [100, 200)
    assert view.held == RangeSet(((0, 300),))
    on_disk = store.partial_path(D, R, 0).read_bytes()
    assert on_disk[100:200] == DATA[100:200]           # kept: it was held first
    assert on_disk[:100] == bytes(100) and on_disk[200:300] == bytes(100)


def test_chunk_past_the_offered_size_is_a_caller_bug(store: CentralStore) -> None:
    store.save_offer(D, R, offer())
    with pytest.raises(ValueError):
        store.put_chunk(D, R, 0, len(DATA) - 1, b"xx")


def test_commit_needs_every_byte_and_the_current_generation(store: CentralStore) -> None:
    store.save_offer(D, R, offer())
    store.put_chunk(D, R, 0, 0, DATA[:5000])
    assert store.commit(D, R, 0, b"receipt").receipt is None     # not complete
    fill(store)
    assert store.commit(D, R, 1, b"receipt").receipt is None     # stale generation
    view = store.commit(D, R, 0, b"receipt")
    assert view.receipt == b"receipt"
    assert store.final_path(D, R).read_bytes() == DATA
    assert store.manifest_path(D, R).read_bytes() == b'{"m":1}'
    assert not store.partial_path(D, R, 0).exists()


def test_first_commit_wins_and_no_second_copy(store: CentralStore) -> None:
    store.save_offer(D, R, offer())
    fill(store)
    store.commit(D, R, 0, b"first", signer_cert=b"PEM")
    before = sorted(p.name for p in (store.final_dir / D).iterdir())
    view = store.commit(D, R, 0, b"second")
    assert view.receipt == b"first"
    assert store.put_chunk(D, R, 0, 0, b"x" * 10).receipt == b"first"   # nothing written
    assert store.discard(D, R, 0).generation == 0                       # nothing discarded
    assert sorted(p.name for p in (store.final_dir / D).iterdir()) == before
    assert [r.recording_id for r in store.committed()] == [R]
    rec = store.get(D, R)
    assert rec is not None and rec.signer_cert == b"PEM" and rec.committed_at is not None


def test_discard_moves_to_the_next_generation(store: CentralStore) -> None:
    store.save_offer(D, R, offer())
    fill(store)
    view = store.discard(D, R, 0)
    assert view.generation == 1 and not view.held and view.offer == offer()
    assert not store.partial_path(D, R, 0).exists()
    assert store.discard(D, R, 0).generation == 1            # stale: no second bump
    assert not store.put_chunk(D, R, 0, 0, DATA[:10]).held   # old generation refused
    fill(store, gen=1)
    assert store.commit(D, R, 1, b"r").receipt == b"r"


def test_open_generation_reads_only_the_current_uncommitted_generation(
        store: CentralStore) -> None:
    store.save_offer(D, R, offer())
    fill(store)
    f = store.open_generation(D, R, 0)
    assert f is not None
    with f:
        assert f.read() == DATA
    assert store.open_generation(D, R, 1) is None
    store.commit(D, R, 0, b"r")
    assert store.open_generation(D, R, 0) is None


def test_everything_survives_reopening(tmp_path: Path) -> None:
    with CentralStore(tmp_path / "c") as s:
        s.save_offer(D, R, offer())
        s.put_chunk(D, R, 0, 0, DATA[:3000])
        s.put_chunk(D, R, 0, 6000, DATA[6000:7000])
    with CentralStore(tmp_path / "c") as s:
        view = s.load(D, R)
        assert view.offer == offer()
        assert view.held == RangeSet(((0, 3000), (6000, 7000)))


def test_recovery_removes_leftovers_and_rolls_back_a_half_commit(tmp_path: Path) -> None:
    root = tmp_path / "c"
    with CentralStore(root) as s:
        # a committed recording, a discarded generation's orphan, a temp file, a half commit
        s.save_offer(D, "done", offer())
        for off in range(0, len(DATA), 4096):
            s.put_chunk(D, "done", 0, off, DATA[off:off + 4096])
        s.commit(D, "done", 0, b"r-done")
        s.save_offer(D, "half", offer())
        for off in range(0, len(DATA), 4096):
            s.put_chunk(D, "half", 0, off, DATA[off:off + 4096])
        orphan = s.partial_path(D, "half", 3)
        orphan.write_bytes(b"old generation")
        stale = s.partial_path(D, "done", 0)
        stale.write_bytes(b"leftover of a committed recording")
        temp = s.final_dir / D / "half.manifest.1234-0badc0de.tmp"
        temp.write_bytes(b"{")
        stranger = s.partial_dir / D / "notes.txt"
        stranger.write_bytes(b"not ours")
        # crash between "rename to final" and the index commit:
        s.manifest_path(D, "half").write_bytes(b'{"m":1}')
        os.rename(s.partial_path(D, "half", 0), s.final_path(D, "half"))
    with CentralStore(root) as s:
        report = s.recover()
        assert report.rolled_back == [f"{D}/half"]
        assert sorted(report.removed_partials) == [f"{D}/done.g0", f"{D}/half.g3"]
        assert report.removed_temps == [f"{D}/{temp.name}"]
        assert report.unknown_files == [f"partial/{D}/notes.txt"]
        assert stranger.exists()                               # not ours: left alone
        assert s.final_path(D, "done").read_bytes() == DATA    # committed: never touched
        assert not s.final_path(D, "half").exists()
        assert not s.manifest_path(D, "half").exists()
        assert s.partial_path(D, "half", 0).read_bytes() == DATA
        assert s.commit(D, "half", 0, b"r-half").receipt == b"r-half"
        assert s.final_path(D, "half").read_bytes() == DATA
        assert s.recover().unknown_files == [f"partial/{D}/notes.txt"]


def test_a_half_commit_is_repaired_lazily_too(store: CentralStore) -> None:
    """Another receiver may never restart: touching the recording repairs it."""
    store.save_offer(D, R, offer())
    fill(store)
    store.final_path(D, R).parent.mkdir()
    os.rename(store.partial_path(D, R, 0), store.final_path(D, R))
    f = store.open_generation(D, R, 0)
    assert f is not None
    with f:
        assert f.read() == DATA
    assert store.commit(D, R, 0, b"r").receipt == b"r"


def test_lost_partial_file_is_not_committed(store: CentralStore) -> None:
    store.save_offer(D, R, offer())
    fill(store)
    store.partial_path(D, R, 0).unlink()
    assert store.commit(D, R, 0, b"r").receipt is None
    assert store.open_generation(D, R, 0) is None       # verification fails → discard


def test_ids_that_are_not_file_names_are_refused(store: CentralStore) -> None:
    with pytest.raises(ValueError):
        store.save_offer(D, "..", offer())
    with pytest.raises(ValueError):
        store.save_offer("../etc", R, offer())


def test_range_encoding_round_trips() -> None:
    rs = RangeSet(((0, 10), (20, 131072), (2**40, 2**40 + 5)))
    assert decode_ranges(encode_ranges(rs)) == rs
    assert decode_ranges("") == RangeSet()
    with pytest.raises(ValueError):
        decode_ranges("5-x")
