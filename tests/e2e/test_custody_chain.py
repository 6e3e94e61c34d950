"""The custody chain end to end against a real Mosquitto (the repo's config), a real
receiver process and a real office (intake + forwarder processes)."""

from __future__ import annotations

import hashlib
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.custody.messages import DOWN, KIND_RECEIPT, topic
from edge.custody.receipt import sign_receipt, verify_receipt
from edge.intake.server import open_spool
from tests.support.broker import Broker, publish_and_wait
from tests.support.office import REPO

from .chain import (
    all_purged,
    check_removals_have_valid_receipts,
    make_central,
    make_chain_office,
    spool_rows,
    upload,
    wait_until,
)


def body_for(rid: str, size: int) -> bytes:
    return random.Random(rid).randbytes(size)


def central_matches_spool(central, office) -> dict[str, str]:  # type: ignore[no-untyped-def]
    held = central.held()
    ids = [h["recording_id"] for h in held]
    assert len(ids) == len(set(ids)), "a recording is held twice centrally"
    return {h["recording_id"]: h["sealed_sha256"] for h in held}


def test_recordings_flow_to_central_and_leave_only_with_a_receipt(broker: Broker,
                                                                  tmp_path: Path) -> None:
    central = make_central(tmp_path / "central", broker)
    central.start_receiver()
    office = make_chain_office(tmp_path / "office", central)
    office.start_intake()
    office.start_forwarder()
    try:
        sizes = {"r-small": 1000, "r-empty": 0, "r-big": 3_000_000}
        for rid, size in sizes.items():
            assert upload(office, rid, body_for(rid, size)) == 201
        wait_until(lambda: all_purged(office), 60, "receipts",
                   lambda: (office.root / "forward.log").read_text()[-3000:])
        assert check_removals_have_valid_receipts(office, central) == 3
        held = central_matches_spool(central, office)
        rows = {r["recording_id"]: r for r in spool_rows(office)}
        assert held == {rid: rows[rid]["sealed_sha256"] for rid in sizes}
        out = tmp_path / "opened"
        r = subprocess.run([sys.executable, "-m", "edge.central.cli", "open", "r-big",
                            "--data-dir", str(central.data_dir), "--ca", str(broker.ca_path),
                            "--device-certs", str(central.device_certs),
                            "--sealing-key", str(office.root / "central-seal.key"),
                            "--out", str(out)], capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == body_for("r-big", 3_000_000)
        # the workstation sees the central receipt on its GET
        st = httpx.get(f"{office.url}/v1/recordings/r-big", headers=office.auth).json()
        assert st["state"] == "purged" and "central_receipt" in st
    finally:
        office.stop()
        central.stop()


def test_a_receipt_makes_room_for_the_next_recording_without_waiting_for_a_poll(
        broker: Broker, tmp_path: Path) -> None:
    """More recordings wait than the forwarder holds at once (max_enqueued): the next ones
    are taken as receipts free their places, not at the next spool poll. Otherwise a run of
    small recordings empties the queue long before poll_s and the link sits idle."""
    central = make_central(tmp_path / "central", broker)
    central.start_receiver()
    office = make_chain_office(tmp_path / "office", central,
                               forward={"poll_s": 60.0, "max_enqueued": 4})
    office.start_intake()
    try:
        ids = [f"f-{i:02d}" for i in range(12)]
        for rid in ids:
            assert upload(office, rid, body_for(rid, 2000)) == 201
        office.start_forwarder()   # its first poll takes 4 of the 12
        # polls alone would need two more, 60 s apart
        wait_until(lambda: all_purged(office), 40, "every receipt",
                   lambda: (office.root / "forward.log").read_text()[-3000:])
        assert check_removals_have_valid_receipts(office, central) == len(ids)
    finally:
        office.stop()
        central.stop()


def test_a_receipt_stored_just_before_a_crash_still_frees_the_local_copy(
        broker: Broker, tmp_path: Path) -> None:
    """Killed between storing the verified receipt and deleting the file: the row is
    'receipted' with its file still there and no poll returns it again. The next forwarder
    start finishes the deletion."""
    central = make_central(tmp_path / "central", broker)
    office = make_chain_office(tmp_path / "office", central)
    office.start_intake()
    try:
        assert upload(office, "r-cut", b"z" * 5000) == 201
        row = spool_rows(office)[0]
        digest = bytes.fromhex(row["sealed_sha256"])
        raw = sign_receipt(central.receipt_key, device_id="kec-e2e-01", recording_id="r-cut",
                           sealed_sha256=digest, sealed_size=row["sealed_size"],
                           received_at_ms=1, receiver_id="central-receiver-t1")
        spool = open_spool(office.config)
        spool.mark_receipted(verify_receipt(central.receipt_key.public_key(), raw,
                                            "kec-e2e-01", "r-cut", digest,
                                            expect_sealed_size=row["sealed_size"]))
        spool.close()
        path = office.config.spool.dir / "data" / row["file"]
        assert path.exists() and spool_rows(office)[0]["state"] == "receipted"
        office.start_forwarder()
        wait_until(lambda: spool_rows(office)[0]["state"] == "purged", 30, "the purge",
                   lambda: (office.root / "forward.log").read_text()[-3000:])
        assert not path.exists() and spool_rows(office)[0]["receipt"] == raw
    finally:
        office.stop()
        central.stop()


def test_forged_receipt_is_rejected_and_nothing_is_removed(broker: Broker,
                                                           tmp_path: Path) -> None:
    central = make_central(tmp_path / "central", broker)
    office = make_chain_office(tmp_path / "office", central)
    office.start_intake()
    office.start_forwarder()
    try:
        assert upload(office, "r-forge", b"x" * 5000) == 201
        wait_until(lambda: spool_rows(office)[0]["state"] == "sending", 20, "forwarding")
        row = spool_rows(office)[0]
        forger = Ed25519PrivateKey.generate()
        forged = sign_receipt(forger, device_id="kec-e2e-01", recording_id="r-forge",
                              sealed_sha256=bytes.fromhex(row["sealed_sha256"]),
                              sealed_size=row["sealed_size"], received_at_ms=1,
                              receiver_id="central-receiver-evil")
        rx = broker.connect("central-receiver", client_id="forger")
        t = topic("kec-e2e-01", DOWN, KIND_RECEIPT)
        assert not publish_and_wait(rx, t, forged).is_failure
        time.sleep(2.0)
        assert spool_rows(office)[0]["state"] in ("stored", "sending")
        assert "receipt" in (office.root / "forward.log").read_text()
        # the real receiver then delivers and the real receipt is taken
        central.start_receiver()
        wait_until(lambda: all_purged(office), 60, "the genuine receipt")
        assert check_removals_have_valid_receipts(office, central) == 1
    finally:
        office.stop()
        central.stop()


def test_damaged_local_copy_is_quarantined_never_delivered(broker: Broker,
                                                           tmp_path: Path) -> None:
    central = make_central(tmp_path / "central", broker)
    central.start_receiver()
    office = make_chain_office(tmp_path / "office", central)
    office.start_intake()
    try:
        assert upload(office, "r-bad", body_for("r-bad", 300_000)) == 201
        row = spool_rows(office)[0]
        path = office.config.spool.dir / "data" / row["file"]
        data = bytearray(path.read_bytes())
        data[-100] ^= 0xFF  # the SD card flipped a bit after sealing
        path.write_bytes(bytes(data))
        office.start_forwarder()
        wait_until(lambda: spool_rows(office)[0]["state"] == "lost", 60, "quarantine",
                   lambda: (office.root / "forward.log").read_text()[-3000:])
        assert (office.config.spool.dir / "quarantine" / row["file"]).exists()
        assert central.held() == []
    finally:
        office.stop()
        central.stop()


@pytest.mark.slow
def test_slow_receiver_behind_a_tiny_broker_queue_loses_nothing(broker: Broker,
                                                                tmp_path: Path) -> None:
    """Mosquitto drops QoS 1 messages beyond max_queued_messages for a slow subscriber while
    still PUBACKing the publisher; the end-to-end protocol notices and resends."""
    broker.render(max_inflight_messages=2, max_queued_messages=4)
    broker.restart()
    central = make_central(tmp_path / "central", broker)
    rx = central.start_receiver()
    office = make_chain_office(tmp_path / "office", central)
    office.start_intake()
    office.start_forwarder()
    try:
        # The receiver is slow for the whole transfer: it runs in short bursts; each burst
        # acks chunks, the forwarder refills its window, and the broker's tiny queue for the
        # stopped receiver overflows.
        done = threading.Event()

        def slow_receiver() -> None:
            while not done.is_set():
                rx.send_signal(signal.SIGSTOP)
                time.sleep(0.4)
                rx.send_signal(signal.SIGCONT)
                time.sleep(0.1)

        throttle = threading.Thread(target=slow_receiver)
        throttle.start()
        ids = [f"q-{i:03d}" for i in range(30)]
        try:
            for rid in ids:
                assert upload(office, rid, body_for(rid, 400_000)) == 201
            wait_until(lambda: all_purged(office), 180, "every receipt from a slow receiver")
        finally:
            done.set()
            throttle.join()
            rx.send_signal(signal.SIGCONT)
        assert set(central_matches_spool(central, office)) == set(ids)
        # The broker PUBACKed chunks it then dropped for the stalled receiver: the forwarder
        # had to send more than the sealed bytes (else this test proved nothing).
        sealed = sum(r["sealed_size"] for r in spool_rows(office))
        office.kill_forwarder(signal.SIGTERM)
        m = re.search(r"stopping: \d+ chunks sent \((\d+) bytes\)",
                      (office.root / "forward.log").read_text())
        assert m is not None and int(m.group(1)) > sealed, (m and m.group(0), sealed)
        assert check_removals_have_valid_receipts(office, central) == len(ids)
    finally:
        office.stop()
        central.stop()


@pytest.mark.slow
def test_sigkill_forwarder_receiver_and_broker_during_a_big_transfer(broker: Broker,
                                                                     tmp_path: Path) -> None:
    rnd = random.Random(2026)
    central = make_central(tmp_path / "central", broker)
    central.start_receiver()
    office = make_chain_office(tmp_path / "office", central)
    office.start_intake()
    office.start_forwarder()
    plan = [(f"k-{i:03d}", rnd.choice([1_000, 20_000, 90_000, 250_000])) for i in range(200)]
    plan += [(f"k-big-{i}", rnd.randint(2_000_000, 4_000_000)) for i in range(8)]
    rnd.shuffle(plan)
    uploaded: dict[str, str] = {}
    errors: list[str] = []

    def uploader() -> None:
        with httpx.Client(timeout=60) as c:
            for rid, size in plan:
                body = body_for(rid, size)
                code = upload(office, rid, body, c)
                if code != 201:
                    errors.append(f"{rid}: {code}")
                uploaded[rid] = hashlib.sha256(body).hexdigest()

    t = threading.Thread(target=uploader)
    t.start()
    kills = {"forwarder": 0, "receiver": 0, "broker": 0}
    try:
        for round_ in range(9):
            time.sleep(rnd.uniform(0.8, 2.5))
            victim = ["forwarder", "receiver", "broker"][round_ % 3]
            kills[victim] += 1
            if victim == "forwarder":
                office.kill_forwarder()
                time.sleep(rnd.uniform(0.1, 1.0))
                office.start_forwarder()
            elif victim == "receiver":
                central.procs[-1].kill()
                central.procs[-1].wait()
                time.sleep(rnd.uniform(0.1, 1.0))
                central.start_receiver()
            else:
                broker.kill()
                time.sleep(rnd.uniform(0.1, 1.0))
                broker.start()
        t.join()
        assert not errors
        wait_until(lambda: all_purged(office), 240, "every receipt after the chaos",
                   lambda: (office.root / "forward.log").read_text()[-3000:])
        rows = {r["recording_id"]: r for r in spool_rows(office)}
        assert set(rows) == {rid for rid, _ in plan}
        held = central_matches_spool(central, office)
        assert held == {rid: r["sealed_sha256"] for rid, r in rows.items()}
        assert check_removals_have_valid_receipts(office, central) == len(plan)
        assert {r["plaintext_sha256"] for r in rows.values()} == set(uploaded.values())
        assert all(kills.values())
    finally:
        t.join()
        office.stop()
        central.stop()


def test_selftest_recording_comes_back_with_a_verified_receipt(broker: Broker,
                                                               tmp_path: Path) -> None:
    from edge.forward.selftest import send_test_recording

    central = make_central(tmp_path / "central", broker)
    central.start_receiver()
    office = make_chain_office(tmp_path / "office", central)
    try:
        info = send_test_recording(office.config, timeout=60)  # no forwarder service yet
        assert info.via == "self-test forwarder" and info.recording_id.startswith("selftest-")
        office.start_forwarder()
        wait_until(lambda: "connected to" in (office.root / "forward.log").read_text(), 30,
                   "the forwarder service")
        again = send_test_recording(office.config, timeout=60)
        assert again.via == "service"
        assert check_removals_have_valid_receipts(office, central) == 2
    finally:
        office.stop()
        central.stop()
