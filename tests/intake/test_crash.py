"""SIGKILL the intake at random moments during many concurrent uploads, restart, repeat.

Every upload that got its 201 must be in the spool and open centrally to the same bytes;
uploads cut off without a 201 leave no half-written recording and succeed on retry."""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import sqlite3
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from edge.central.opener import open_sealed
from tests.support.office import Office


def body_for(rid: str) -> bytes:
    rnd = random.Random(rid)
    size = rnd.choice([0, 1, 5_000, 70_000, 300_000, 1_200_000, 3_000_000])
    return rnd.randbytes(size)


@pytest.mark.slow
def test_sigkill_during_concurrent_uploads(fresh_office: Office) -> None:
    office = fresh_office
    rnd = random.Random(2026)
    acked: dict[str, str] = {}
    pending = [f"rec-{i:04d}" for i in range(240)]
    lock = threading.Lock()

    def worker(stop: threading.Event) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                with lock:
                    if not pending:
                        return
                    rid = pending.pop(rnd.randrange(len(pending)))
                body = body_for(rid)
                try:
                    r = client.put(f"{office.url}/v1/recordings/{rid}", content=body,
                                   headers=office.auth)
                except httpx.TransportError:
                    with lock:
                        pending.append(rid)  # no 201: the workstation retries later
                    continue
                assert r.status_code in (200, 201), r.text
                assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
                with lock:
                    acked[rid] = r.json()["sha256"]

    def slow_upload(rid: str, started: threading.Event) -> None:
        """One upload that is surely mid-body when the kill comes (~2 s of streaming), so
        every round proves that a cut-off upload leaves nothing behind. Never retried."""
        size, block = 3_000_000, random.Random(rid).randbytes(64 * 1024)

        def body() -> Iterator[bytes]:
            sent = 0
            while sent < size:
                n = min(len(block), size - sent)
                yield block[:n]
                sent += n
                started.set()
                time.sleep(0.05)
        with contextlib.suppress(httpx.TransportError):
            httpx.put(f"{office.url}/v1/recordings/{rid}", content=body(), timeout=30,
                      headers={**office.auth, "Content-Length": str(size)})

    rounds = 0
    while True:
        office.start_intake()
        # after every restart, everything acknowledged before must still be there
        check_present(office, acked)
        stop = threading.Event()
        threads = [threading.Thread(target=worker, args=(stop,)) for _ in range(6)]
        if rounds < 8:
            started = threading.Event()
            threads.append(threading.Thread(target=slow_upload,
                                            args=(f"slow-{rounds}", started)))
        for t in threads:
            t.start()
        if rounds < 8:
            assert started.wait(30), "the slow upload never started"
            time.sleep(rnd.uniform(0.05, 0.5))
            office.kill()  # SIGKILL, mid-upload
            stop.set()
        for t in threads:
            t.join()
        rounds += 1
        if rounds > 8:
            break
    office.stop()
    # The test proves something only if some kills landed mid-upload.
    assert office.log_path is not None
    import re
    removed = sum(int(n) for n in re.findall(r"(\d+) temp removed", office.log_path.read_text()))
    assert removed >= 8, "each SIGKILL cut off the slow upload: each left a temp file"
    with lock:
        assert not pending
    assert len(acked) == 240
    check_present(office, acked)
    # Opened centrally, every recording is the exact bytes that were uploaded.
    conn = sqlite3.connect(office.config.spool.dir / "spool.db")
    rows = conn.execute("SELECT recording_id, file, manifest FROM recordings").fetchall()
    assert not [rid for rid, _, _ in rows if rid.startswith("slow-")]  # all cut off
    assert len(rows) == 240
    for rid, file, manifest in rows:
        out = io.BytesIO()
        with (office.config.spool.dir / "data" / file).open("rb") as f:
            open_sealed(f, manifest, office.device_key.public_key(), office.central, out)
        assert out.getvalue() == body_for(rid)
    # No orphans: data/ holds exactly the indexed files; any quarantined file belongs to an
    # upload that never got its 201 in that round (and was later retried successfully).
    data = {p.name for p in (office.config.spool.dir / "data").iterdir()}
    assert data == {file for _, file, _ in rows}


def check_present(office: Office, acked: dict[str, str]) -> None:
    conn = sqlite3.connect(office.config.spool.dir / "spool.db")
    got = dict(conn.execute("SELECT recording_id, plaintext_sha256 FROM recordings"))
    conn.close()
    for rid, digest in acked.items():
        assert got.get(rid) == digest, f"{rid} acknowledged but missing after SIGKILL"
