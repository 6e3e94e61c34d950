"""Hot folder: files are taken in only once complete, and leave only once durable."""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge.intake.hotfolder import HotFolder
from edge.spool import State
from tests.spool.helpers import make_ingestor, make_spool


def make(tmp_path: Path, settle: float = 2.0, quota: int = 1 << 30) -> tuple[HotFolder, Path]:
    spool = make_spool(tmp_path / "spool", quota=quota)
    folder = tmp_path / "hot"
    return HotFolder(folder, make_ingestor(spool), "scanner-1", settle_s=settle), folder


def test_file_is_taken_after_it_settles_and_then_removed(tmp_path: Path) -> None:
    hot, folder = make(tmp_path)
    (folder / "nik-1.bin").write_bytes(b"a" * 1000)
    (folder / "nik-1.bin.json").write_text(json.dumps({"operator": "budi",
                                                       "priority": "urgent"}))
    assert hot.scan_once(now=0.0) == []           # first sight: not yet stable
    (folder / "nik-1.bin").write_bytes(b"a" * 2000)  # still being written
    assert hot.scan_once(now=1.5) == []
    assert hot.scan_once(now=2.0) == []            # changed at 1.5: clock restarts
    assert hot.scan_once(now=3.6) == [("nik-1.bin", "created")]
    assert sorted(p.name for p in folder.iterdir()) == ["rejected"]
    rec = hot.ingestor.spool.require("nik-1")
    assert rec.state is State.STORED and rec.plaintext_size == 2000
    assert rec.operator == "budi" and rec.workstation == "scanner-1" and rec.priority == 0


def test_partial_and_hidden_files_are_left_alone(tmp_path: Path) -> None:
    hot, folder = make(tmp_path, settle=0)
    (folder / "nik-2.bin.part").write_bytes(b"x")
    (folder / ".nik-3.bin").write_bytes(b"x")
    assert hot.scan_once() == []
    os.rename(folder / "nik-2.bin.part", folder / "nik-2.bin")  # renamed into place
    assert hot.scan_once() == [("nik-2.bin", "created")]


def test_bad_name_and_conflict_go_to_rejected_with_a_reason(tmp_path: Path) -> None:
    hot, folder = make(tmp_path, settle=0)
    (folder / "nik-4.bin").write_bytes(b"first")
    hot.scan_once()
    (folder / "nik-4.bin").write_bytes(b"second, different")
    (folder / "bad name!.bin").write_bytes(b"x")
    results = dict(hot.scan_once())
    assert results["nik-4.bin"].startswith("rejected")
    assert results["bad name!.bin"].startswith("rejected")
    assert "different content" in (folder / "rejected" / "nik-4.bin.reason.txt").read_text()
    assert (folder / "rejected" / "nik-4.bin").read_bytes() == b"second, different"


def test_full_spool_leaves_the_file_in_place(tmp_path: Path) -> None:
    hot, folder = make(tmp_path, settle=0, quota=10_000)
    (folder / "big.bin").write_bytes(b"x" * 50_000)
    assert hot.scan_once() == [("big.bin", "waiting: spool full")]
    assert (folder / "big.bin").exists()
