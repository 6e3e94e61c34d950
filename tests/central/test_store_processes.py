"""The store shared by real processes: SIGKILL at any moment loses nothing that was reported
held or committed, and two processes racing to commit end with one copy and one receipt."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge.central.store import CentralStore
from tests.central.store_worker import DEVICE, data_for, offer_for
from tests.support.office import REPO

SIZE = 60_000


def worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.central.store_worker", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def check_and_finish(root: Path, prefix: str, count: int, seed: int) -> tuple[int, int]:
    """After a crash: recovery, then every recording is either committed with exactly its
    bytes, or holds exactly the right bytes for every range it reports and can be finished.
    Returns (committed before, finished now)."""
    committed = finished = 0
    with CentralStore(root) as store:
        report = store.recover()
        assert not report.unknown_files, report
        for i in range(count):
            rid = f"{prefix}-{i}"
            data = data_for(prefix, i, SIZE, seed)
            rec = store.get(DEVICE, rid)
            if rec is None:
                continue
            if rec.committed:
                committed += 1
                assert store.final_path(DEVICE, rid).read_bytes() == data
                assert not store.partial_path(DEVICE, rid, 0).exists()
                assert rec.receipt == f"receipt-{rid}".encode()
                continue
            if rec.held:
                on_disk = store.partial_path(DEVICE, rid, 0).read_bytes()
                for s, e in rec.held:
                    assert on_disk[s:e] == data[s:e], f"{rid}: held [{s},{e}) is not durable"
            for off in range(0, SIZE, 7000):
                store.put_chunk(DEVICE, rid, 0, off, data[off:off + 7000])
            assert store.commit(DEVICE, rid, 0, b"after-crash").receipt == b"after-crash"
            assert store.final_path(DEVICE, rid).read_bytes() == data
            finished += 1
    assert not [p for p in (root / "partial").rglob("*") if p.is_file()]
    return committed, finished


def test_sigkill_mid_put_or_commit_loses_nothing_reported(tmp_path: Path) -> None:
    rng = random.Random(7)
    outcomes = []
    for round_ in range(5):
        root = tmp_path / f"store{round_}"
        # More recordings than it can finish before the kill: it is always mid-way.
        p = worker("hammer", str(root), f"r{round_}", "200", str(SIZE), str(round_))
        assert p.stdout is not None
        # Let it get going (first chunk stored), then kill it at a random later moment.
        first = p.stdout.readline()
        assert first.startswith("put "), p.stderr.read() if p.stderr else first
        time.sleep(rng.uniform(0.0, 0.25))
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        outcomes.append(check_and_finish(root, f"r{round_}", 200, round_))
    print("committed before the kill, finished after it:", outcomes)
    # The kills interrupted recordings in progress (unless one landed exactly between a
    # commit and the next offer).
    assert sum(f for _, f in outcomes) >= 3


def test_two_processes_racing_to_commit_leave_one_copy_and_one_receipt(
        tmp_path: Path) -> None:
    root = tmp_path / "store"
    n = 12
    with CentralStore(root) as store:
        for i in range(n):
            data = data_for("race", i, 5000, 0)
            store.save_offer(DEVICE, f"race-{i}", offer_for(data))
            store.put_chunk(DEVICE, f"race-{i}", 0, 0, data)
    procs = [worker("commit", str(root), "race", str(n), tag) for tag in ("A", "B")]
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        answers.append(dict(line.split() for line in out.splitlines()))
    assert answers[0] == answers[1]                 # both were told the same receipt
    assert {v.split("-")[0] for v in answers[0].values()} <= {"A", "B"}
    with CentralStore(root) as store:
        finals = sorted(p.name for p in (root / "final" / DEVICE).glob("*.seal"))
        assert finals == sorted(f"race-{i}.seal" for i in range(n))
        for i in range(n):
            rec = store.get(DEVICE, f"race-{i}")
            assert rec is not None and rec.receipt == answers[0][f"race-{i}"].encode()
            assert store.final_path(DEVICE, f"race-{i}").read_bytes() == data_for(
                "race", i, 5000, 0)
