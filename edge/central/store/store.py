"""The central custody store: sealed files on disk plus an index, shared by all receivers.

Place in the data flow: broker → receiver adapter → custody ``Receiver`` machine → actions →
**CentralStore** (``CustodyStore`` of edge/custody/receiver.py) → ``final/`` files that
``edge-central open`` decrypts for downstream systems.

Layout under ``data_dir``::

    custody.db                      index (SQLite, WAL): offers, generations, ranges, receipts
    partial/{device}/{rid}.g{gen}   bytes of generation ``gen`` being reassembled (sparse)
    final/{device}/{rid}.seal       the committed sealed file, exactly as the device sealed it
    final/{device}/{rid}.manifest   its signed manifest (also in the index): the final tree
                                    alone can be verified and re-indexed

Theory of operation
-------------------
Every method runs inside ``index.locked(device, recording)``, so file operations and index
changes of one recording are atomic with respect to every other receiver process (SQLite:
``BEGIN IMMEDIATE``). The index is committed last, so it never claims what the files do not
hold:

* ``put_chunk``: ``pwrite`` only the bytes not held yet (held bytes are never rewritten, so
  what was verified is what gets committed), ``fsync`` the file (and its directory when the
  file is new), then record the range.
* ``commit``: ``fsync`` the partial file; write the manifest temp → fsync → rename; rename the
  partial file to ``final/…/{rid}.seal``; ``fsync`` both directories; then one index update
  with the committed flag, the receipt and the signer's certificate. The final name depends
  only on (device, recording), and a committed row is never changed again: a duplicate never
  makes a second copy, and the first commit's receipt is the one every later answer carries.
* ``discard``: move the index to ``generation + 1`` first, then delete the old partial file
  (a crash in between leaves an orphan that recovery removes).

A crash between the rename and the index commit leaves a final file for an uncommitted row
("half commit"). It is rolled back (renamed back to the partial name) by ``recover()`` and
lazily by any operation that touches the recording, so the bytes are verified and committed
again. ``recover()`` also removes partial files of discarded generations or committed
recordings and leftover ``*.tmp`` files. Nothing ever deletes a ``.seal`` file in ``final/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from edge.central.store.errors import StoreError
from edge.central.store.index import IndexRecord, RecordingIndex
from edge.central.store.sqlite_index import SqliteIndex
from edge.custody.ranges import RangeSet
from edge.custody.receiver import CustodyStore, OfferRecord, StoreView
from edge.durable import fsync_dir

__all__ = ["INDEX_FILE", "CentralStore", "RecoveryReport"]

INDEX_FILE = "custody.db"
_PARTIAL_RE = re.compile(r"(?P<rid>.+)\.g(?P<gen>\d+)\Z")
_TEMP_RE = re.compile(r"(?P<rid>.+)\.manifest\.\d+-[0-9a-f]{8}\.tmp\Z")
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")


@dataclass
class RecoveryReport:
    """What startup recovery changed (every entry is ``device/recording``)."""

    removed_partials: list[str] = field(default_factory=list)
    removed_temps: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    unknown_files: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.removed_partials or self.removed_temps or self.rolled_back
                    or self.unknown_files)


def _check_name(value: str, what: str) -> str:
    # The machine only passes validated ids; this guards the file layout itself.
    if not _SAFE_NAME.match(value) or value in (".", ".."):
        raise ValueError(f"{what} {value!r} cannot be a file name in the custody store")
    return value


def _ensure_dir(path: Path) -> None:
    """Create ``path`` (one level) durably: the new entry in its parent must survive."""
    if not path.is_dir():
        path.mkdir(mode=0o700, exist_ok=True)
        fsync_dir(path.parent)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


class CentralStore:
    """One store directory; each receiver process opens its own instance."""

    def __init__(self, data_dir: Path, index: RecordingIndex | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = Path(data_dir)
        self.partial_dir = self.root / "partial"
        self.final_dir = self.root / "final"
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            _ensure_dir(self.partial_dir)
            _ensure_dir(self.final_dir)
        except OSError as e:
            raise StoreError(f"{self.root}: cannot create the custody store ({e.strerror}); "
                             "check [central] data_dir and its permissions") from e
        self.index: RecordingIndex = index or SqliteIndex(self.root / INDEX_FILE)
        self._clock = clock

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> CentralStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ paths

    def partial_path(self, device_id: str, recording_id: str, generation: int) -> Path:
        return (self.partial_dir / _check_name(device_id, "device id")
                / f"{_check_name(recording_id, 'recording id')}.g{generation}")

    def final_path(self, device_id: str, recording_id: str) -> Path:
        return (self.final_dir / _check_name(device_id, "device id")
                / f"{_check_name(recording_id, 'recording id')}.seal")

    def manifest_path(self, device_id: str, recording_id: str) -> Path:
        return (self.final_dir / _check_name(device_id, "device id")
                / f"{_check_name(recording_id, 'recording id')}.manifest")

    # ------------------------------------------------------------------ CustodyStore

    def load(self, device_id: str, recording_id: str) -> StoreView:
        return _view(device_id, recording_id, self.index.get(device_id, recording_id))

    def save_offer(self, device_id: str, recording_id: str, offer: OfferRecord) -> StoreView:
        self.partial_path(device_id, recording_id, 0)   # validates both names
        with self.index.locked(device_id, recording_id) as tx:
            rec = tx.get()
            if rec is None:
                rec = IndexRecord(device_id, recording_id, offer.seq, offer.priority,
                                  offer.sealed_size, offer.sealed_sha256, offer.manifest,
                                  offered_at=self._clock())
                tx.insert(rec)
        return _view(device_id, recording_id, rec)

    def put_chunk(self, device_id: str, recording_id: str, generation: int, offset: int,
                  data: bytes) -> StoreView:
        with self.index.locked(device_id, recording_id) as tx:
            rec = tx.get()
            if rec is None or rec.committed or generation != rec.generation:
                return _view(device_id, recording_id, rec)
            end = offset + len(data)
            if offset < 0 or not data or end > rec.sealed_size:
                raise ValueError(f"chunk [{offset}, {end}) does not fit the "
                                 f"{rec.sealed_size}-byte recording {recording_id}")
            self._repair(rec)
            gaps = [(max(s, offset), min(e, end)) for s, e in rec.held.gaps(rec.sealed_size)
                    if s < end and e > offset]
            if not gaps:
                return _view(device_id, recording_id, rec)
            path = self.partial_path(device_id, recording_id, generation)
            _ensure_dir(path.parent)
            new = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                # 1. only the bytes nobody holds yet
                for lo, hi in gaps:
                    _pwrite_all(fd, view[lo - offset:hi - offset], lo)
                # 2. they reach the disk before anyone is told they are held
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                # 3. so does the file's name
                fsync_dir(path.parent)
            # 4. only now: the index says these bytes are held (on COMMIT at block exit)
            held = rec.held.add(offset, end)
            tx.set_held(held)
            rec = replace(rec, held=held)
        return _view(device_id, recording_id, rec)

    def commit(self, device_id: str, recording_id: str, generation: int, receipt: bytes, *,
               signer_cert: bytes | None = None) -> StoreView:
        """``CustodyStore.commit``; ``signer_cert``: the device certificate (PEM) the
        manifest was verified with, kept so ``open`` works after the device renews it."""
        with self.index.locked(device_id, recording_id) as tx:
            rec = tx.get()
            if (rec is None or rec.committed or generation != rec.generation
                    or not rec.held.complete(rec.sealed_size)):
                return _view(device_id, recording_id, rec)
            self._repair(rec)
            src = self.partial_path(device_id, recording_id, generation)
            dest = self.final_path(device_id, recording_id)
            try:
                fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                # The index holds ranges whose file is gone (deleted by hand?): refuse; the
                # machine reloads, verification fails and the generation is discarded.
                return _view(device_id, recording_id, rec)
            try:
                # 1. every byte of the partial file is on disk (it was, chunk by chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            _ensure_dir(dest.parent)
            # 2. the manifest beside it: temp → fsync → rename
            self._write_manifest(device_id, recording_id, rec.manifest)
            # 3. the sealed file takes its final name (atomic; same filesystem)
            os.rename(src, dest)
            # 4. both directory entries are durable
            fsync_dir(dest.parent)
            fsync_dir(src.parent)
            # 5. committed flag + receipt in one index transaction (COMMIT at block exit)
            at = self._clock()
            tx.set_committed(receipt, at, signer_cert)
            rec = replace(rec, receipt=receipt, committed_at=at, signer_cert=signer_cert)
        return _view(device_id, recording_id, rec)

    def discard(self, device_id: str, recording_id: str, generation: int) -> StoreView:
        with self.index.locked(device_id, recording_id) as tx:
            rec = tx.get()
            if rec is None or rec.committed or generation != rec.generation:
                return _view(device_id, recording_id, rec)
            self._repair(rec)
            tx.set_generation(generation + 1)
            rec = replace(rec, generation=generation + 1, held=RangeSet())
        # After the index moved on, nobody writes or reads generation ``generation`` again.
        old = self.partial_path(device_id, recording_id, generation)
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
            fsync_dir(old.parent)
        return _view(device_id, recording_id, rec)

    # ------------------------------------------------------------------ for the adapter

    def open_generation(self, device_id: str, recording_id: str,
                        generation: int) -> BinaryIO | None:
        """The reassembled bytes of ``generation`` for verification, or None if that
        generation is no longer current (or its file is gone). Bytes of a generation never
        change once held, so reading after the lock is released is safe."""
        with self.index.locked(device_id, recording_id) as tx:
            rec = tx.get()
            if rec is None or rec.committed or rec.generation != generation:
                return None
            self._repair(rec)
            try:
                return self.partial_path(device_id, recording_id, generation).open("rb")
            except FileNotFoundError:
                return None

    def get(self, device_id: str, recording_id: str) -> IndexRecord | None:
        return self.index.get(device_id, recording_id)

    def committed(self, device_id: str | None = None, recording_id: str | None = None,
                  limit: int | None = None) -> list[IndexRecord]:
        return self.index.committed(device_id, recording_id, limit)

    # ------------------------------------------------------------------ recovery

    def recover(self) -> RecoveryReport:
        """Startup clean-up; safe while other receivers use the store (each file is judged
        under its recording's lock). Never deletes a committed recording."""
        report = RecoveryReport()
        for device_id, recording_id in self.index.unfinished():
            with self.index.locked(device_id, recording_id) as tx:
                rec = tx.get()
                if rec is not None and not rec.committed and self._repair(rec):
                    report.rolled_back.append(f"{device_id}/{recording_id}")
        for ddir in sorted(p for p in self.partial_dir.iterdir() if p.is_dir()):
            for path in sorted(ddir.iterdir()):
                m = _PARTIAL_RE.match(path.name)
                if m is None or not _SAFE_NAME.match(ddir.name):
                    report.unknown_files.append(str(path.relative_to(self.root)))
                    continue
                rid, gen = m.group("rid"), int(m.group("gen"))
                with self.index.locked(ddir.name, rid) as tx:
                    rec = tx.get()
                    if rec is None or rec.committed or rec.generation != gen:
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                        fsync_dir(ddir)
                        report.removed_partials.append(f"{ddir.name}/{path.name}")
        for ddir in sorted(p for p in self.final_dir.iterdir() if p.is_dir()):
            for path in sorted(ddir.glob("*.tmp")):
                m = _TEMP_RE.match(path.name)
                if m is None:
                    report.unknown_files.append(str(path.relative_to(self.root)))
                    continue
                # Under the lock no live commit of this recording is writing its temp file.
                with self.index.locked(ddir.name, m.group("rid")):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                    fsync_dir(ddir)
                report.removed_temps.append(f"{ddir.name}/{path.name}")
        return report

    # ------------------------------------------------------------------ helpers

    def _repair(self, rec: IndexRecord) -> bool:
        """Under ``rec``'s lock: undo a half commit (final file, row not committed) by
        renaming the file back to its partial name. True if it did."""
        if rec.committed:
            return False
        final = self.final_path(rec.device_id, rec.recording_id)
        partial = self.partial_path(rec.device_id, rec.recording_id, rec.generation)
        if not final.exists() or partial.exists():
            return False
        _ensure_dir(partial.parent)
        os.rename(final, partial)
        # the manifest beside it goes too: final/ holds only committed recordings
        with contextlib.suppress(FileNotFoundError):
            self.manifest_path(rec.device_id, rec.recording_id).unlink()
        fsync_dir(partial.parent)
        fsync_dir(final.parent)
        return True

    def _write_manifest(self, device_id: str, recording_id: str, manifest: bytes) -> None:
        target = self.manifest_path(device_id, recording_id)
        tmp = target.with_name(f"{target.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _pwrite_all(fd, memoryview(manifest), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        os.close(fd)
        os.replace(tmp, target)


def _view(device_id: str, recording_id: str, rec: IndexRecord | None) -> StoreView:
    if rec is None:
        return StoreView(device_id, recording_id)
    return StoreView(device_id, recording_id,
                     OfferRecord(rec.seq, rec.priority, rec.sealed_size, rec.sealed_sha256,
                                 rec.manifest),
                     rec.generation, rec.held, rec.receipt)


if TYPE_CHECKING:   # mypy proves the store meets the receiver's contract
    _contract: type[CustodyStore] = CentralStore
