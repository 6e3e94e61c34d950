"""``edge-central receive`` as a real process against the real broker (repo config, TLS, ACL),
driven by a device-side custody sender over paho with a device identity.

Each test proves one thing the central site promises: receipts only for durably stored,
verified recordings, and the original bytes back from ``edge-central open``; duplicates make
no second copy; a receiver killed mid-transfer resumes with only the missing bytes; tampered
bytes are caught and sent again; a manifest for another device is refused; two receivers
share the load.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.central.cli import main
from edge.central.receiver_app import ReceiverApp
from edge.central.settings import load_settings
from edge.central.store import SqliteIndex
from edge.custody.messages import State
from edge.custody.receipt import parse_receipt, verify_receipt
from edge.custody.sender import SenderConfig
from tests.central.helpers import CentralSite, DeviceDriver, Sealed, plaintext, seal
from tests.support.broker import Broker

DEV, DEV2 = "kec-3171-01", "kec-3171-02"
FAST = SenderConfig(max_payload=32 * 1024, window_chunks=8, max_open=2, offer_timeout_s=1.0,
                    progress_timeout_s=2.0, receipt_timeout_s=2.0, backoff_max_s=3.0,
                    park_s=600.0)


@pytest.fixture
def site(tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        CentralSite]:
    monkeypatch.delenv("EDGE_CONFIG", raising=False)
    monkeypatch.delenv("EDGE_CENTRAL_DIR", raising=False)
    s = CentralSite.create(tmp_path / "central", broker)
    yield s
    s.close()


def driver(site: CentralSite, device_id: str, **kw: object) -> DeviceDriver:
    return DeviceDriver(site.broker, device_id, site.receipt_key, FAST, **kw)  # type: ignore[arg-type]


def list_json(site: CentralSite, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["list", "--json", "--config", str(site.config_path)]) == 0
    rows: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return rows


def open_to(site: CentralSite, rec: Sealed, out: Path) -> bytes:
    assert main(["open", rec.recording_id, "--device", rec.device_id, "--out", str(out),
                 "--config", str(site.config_path)]) == 0
    return out.read_bytes()


def seal_files(site: CentralSite) -> list[str]:
    return sorted(str(p.relative_to(site.data_dir / "final"))
                  for p in (site.data_dir / "final").rglob("*.seal"))


def test_receipts_listing_open_and_duplicates(site: CentralSite, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    key = site.enrol(DEV)
    rx = site.start_receiver("rx-main")
    rx.wait_ready()
    recs = [seal(DEV, f"nik-{i}", plaintext(size, i), key, seq=i)
            for i, size in enumerate((1, 40_000, 300_000))]
    dev = driver(site, DEV)
    for r in recs:
        dev.add(r)
    dev.wait_receipts([r.recording_id for r in recs])
    for r in recs:   # the device's check, done again independently
        v = verify_receipt(site.receipt_key.public_key(), dev.receipts[r.recording_id].receipt,
                           DEV, r.recording_id, r.sha256, expect_sealed_size=len(r.sealed))
        assert v.fields.receiver_id == "rx-main"

    rows = list_json(site, capsys)
    assert {(x["recording_id"], x["sealed_sha256"], x["sealed_size"]) for x in rows} == {
        (r.recording_id, r.sha256.hex(), len(r.sealed)) for r in recs}
    for r in recs:
        assert open_to(site, r, tmp_path / f"{r.recording_id}.bin") == r.plaintext
    assert dev.bytes_sent() == sum(len(r.sealed) for r in recs)   # nothing sent twice
    dev.close()

    # The device lost its receipts (say, a restored SD card) and sends everything again:
    # it gets the same receipts back, no chunk needs to travel, and no second copy appears.
    before = seal_files(site)
    again = driver(site, DEV, seed=2)
    for r in recs:
        again.add(r)
    again.wait_receipts([r.recording_id for r in recs])
    for r in recs:
        assert again.receipts[r.recording_id].receipt == dev.receipts[r.recording_id].receipt
    assert again.bytes_sent() == 0
    assert seal_files(site) == before == sorted(f"{DEV}/{r.recording_id}.seal" for r in recs)
    assert len(list_json(site, capsys)) == 3
    again.close()
    assert rx.stop() == 0
    assert "commits=3, duplicates=0" in rx.log()
    assert "connection lost" not in rx.log()      # one clean session throughout


def test_receiver_killed_mid_transfer_resumes_with_only_missing_bytes(
        site: CentralSite, tmp_path: Path) -> None:
    key = site.enrol(DEV)
    rx = site.start_receiver("rx-resume")
    rx.wait_ready()
    rec = seal(DEV, "nik-big", plaintext(3_000_000, 9), key)
    size = len(rec.sealed)
    halfway = threading.Event()

    def on_state(msg: State) -> None:
        if msg.held.total >= size // 3:
            halfway.set()

    dev = driver(site, DEV)
    dev.on_state = on_state
    dev.add(rec)
    assert halfway.wait(30), rx.log()
    rx.kill()                                     # SIGKILL: maybe in the middle of a write
    killed_at = time.monotonic()
    index = SqliteIndex(site.data_dir / "custody.db")
    row = index.get(DEV, rec.recording_id)
    index.close()
    assert row is not None and not row.committed
    held = row.held.total
    assert size // 3 <= held < size

    rx2 = site.start_receiver("rx-resume")        # same client id: resumes its session
    rx2.wait_ready()
    dev.wait_receipts([rec.recording_id], timeout=60)
    resent = dev.bytes_sent(since=killed_at)
    piece = FAST.max_payload - (21 + len(rec.recording_id))
    # Only what the store did not hold, plus at most the chunks in flight (spec guarantee 5).
    assert resent <= size - held + FAST.window_chunks * piece, (resent, size, held)
    assert dev.bytes_sent() < 2 * size
    assert open_to(site, rec, tmp_path / "out.bin") == rec.plaintext
    dev.close()
    rx2.stop()
    assert "session resumed" in rx2.log()


def test_tampered_chunk_is_caught_and_sent_again_and_foreign_manifests_refused(
        site: CentralSite, tmp_path: Path) -> None:
    key = site.enrol(DEV)
    other = site.enrol(DEV2)
    rx = site.start_receiver()                    # default id: central-receiver-<host>-<pid>
    rx.wait_ready()
    dev = driver(site, DEV)
    good = seal(DEV, "nik-tamper", plaintext(200_000, 3), key)
    piece = FAST.max_payload - (21 + len(good.recording_id))
    dev.tamper.add((good.recording_id, piece))    # the second chunk, CRC fixed up
    # Signed by this device but claiming another; signed by another device's key; sent by a
    # device the central site never provisioned.
    claims_other = seal(DEV, "nik-claims-other", plaintext(100), key, claim_device=DEV2)
    foreign_key = seal(DEV, "nik-foreign-key", plaintext(100), other)
    for r in (good, claims_other, foreign_key):
        dev.add(r)
    stranger = driver(site, "kec-9999-99")
    stranger.add(seal("kec-9999-99", "nik-stranger", plaintext(100), key))

    dev.wait_receipts([good.recording_id], timeout=40)
    dev.wait(lambda: len(dev.gave_up) == 2, 20, "two refusals")
    stranger.wait(lambda: len(stranger.gave_up) == 1, 20, "refusal of the stranger")
    assert {g.recording_id: g.key for g in dev.gave_up} == {
        "nik-claims-other": "custody.rejected.offer.wrong_device",
        "nik-foreign-key": "custody.rejected.manifest.bad_signature"}
    assert stranger.gave_up[0].key == "custody.rejected.manifest.unknown_device"
    assert any(a.key == "custody.central_hash_mismatch" for a in dev.alerts)
    assert open_to(site, good, tmp_path / "good.bin") == good.plaintext
    index = SqliteIndex(site.data_dir / "custody.db")
    row = index.get(DEV, good.recording_id)
    assert row is not None and row.generation == 1        # one discard, then all again
    assert [r.recording_id for r in index.committed()] == [good.recording_id]
    assert index.get(DEV, "nik-claims-other") is None     # refused before anything was kept
    index.close()
    dev.close()
    stranger.close()
    rx.stop()
    log = rx.log()
    assert re.search(r"ERROR .*ALERT custody\.hash_mismatch kec-3171-01/nik-tamper", log)
    assert re.search(r"ERROR .*ALERT offer\.wrong_device kec-3171-01/nik-claims-other", log)


def test_two_receivers_share_the_load(site: CentralSite, tmp_path: Path) -> None:
    keys = {d: site.enrol(d) for d in (DEV, DEV2)}
    # One configured the way the systemd unit does it, one from flags alone.
    rxs = [site.start_receiver("rx-a", how="env"), site.start_receiver("rx-b", how="flags")]
    for rx in rxs:
        rx.wait_ready()
    devs = {d: driver(site, d) for d in keys}
    recs = [seal(d, f"nik-{d[-2:]}-{i}", plaintext(150_000, i), keys[d], seq=i)
            for d in keys for i in range(3)]
    for r in recs:
        devs[r.device_id].add(r)
    for d, dev in devs.items():
        dev.wait_receipts([r.recording_id for r in recs if r.device_id == d], timeout=40)
        dev.close()
    committers = {parse_receipt(devs[r.device_id].receipts[r.recording_id].receipt).receiver_id
                  for r in recs}
    assert committers <= {"rx-a", "rx-b"}
    for r in recs:
        assert open_to(site, r, tmp_path / f"{r.recording_id}.bin") == r.plaintext
    handled = []
    for rx in rxs:
        assert rx.stop() == 0
        m = re.search(r"stopping: messages=(\d+), chunks_stored=(\d+), commits=(\d+)",
                      rx.log())
        assert m is not None, rx.log()
        handled.append(tuple(int(x) for x in m.groups()))
    # Each instance took part of the traffic; between them every recording was committed once.
    assert all(messages > 0 and chunks > 0 for messages, chunks, _ in handled), handled
    assert sum(commits for _, _, commits in handled) == len(recs)
    assert len(seal_files(site)) == len(recs)


def test_receiver_switches_nagle_off_so_states_are_not_held_back(site: CentralSite) -> None:
    """States and PUBACKs are small and slide every device's window; with Nagle on each one
    waits for the broker's delayed ACK (bench/custody_chain.py measured 2-3x less goodput)."""
    app = ReceiverApp(load_settings(site.config_path))
    t = threading.Thread(target=app.run, name="receiver")
    t.start()
    try:
        deadline = time.monotonic() + 15
        while not app._ready and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app._ready, "the receiver did not subscribe"
        sock = app.client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        app.stop()
        t.join(20)
    assert not t.is_alive()
