"""The staff page answers "aman untuk terus merekam?" in words, not only colour."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.office import Office, make_office


def test_staff_page_in_indonesian_and_english(office: Office) -> None:
    page = httpx.get(office.url + "/").text
    assert "Aman untuk terus merekam?" in page and 'data-verdict="yes"' in page
    assert "YA — aman" in page and 'http-equiv="refresh"' in page
    assert "Belum diketahui" in page  # no uplink state written yet
    en = httpx.get(office.url + "/?lang=en").text
    assert "Safe to keep recording?" in en and "YES" in en


def test_staff_page_explains_offline_and_4g(office: Office) -> None:
    run = office.config.device.state_dir / "run"
    run.mkdir(exist_ok=True)
    (run / "uplink.json").write_text(json.dumps({"active": None}))
    page = httpx.get(office.url + "/").text
    assert "Putus" in page and "tetap tersimpan aman" in page
    (run / "uplink.json").write_text(json.dumps({"active": "4g"}))
    assert "4G cadangan" in httpx.get(office.url + "/").text
    assert httpx.get(office.url + "/staff.json").json()["link"] == "4g"
    (run / "uplink.json").unlink()


def test_staff_page_says_no_when_storage_is_full(tmp_path: Path) -> None:
    o = make_office(tmp_path / "o", spool={"quota_bytes": "4MiB"},
                    intake={"max_recording_bytes": "1MiB"})
    o.start_intake()
    try:
        page = httpx.get(o.url + "/").text
        # quota below one typical (5 MB) recording: the page must say stop, in words
        assert 'data-verdict="no"' in page and "TIDAK" in page
        assert httpx.get(o.url + "/staff.json").json()["verdict"] == "no"
    finally:
        o.stop()


def test_intake_heartbeats_with_the_spool_summary(office: Office) -> None:
    import time

    from edge.health.heartbeat import heartbeat_dir, read_heartbeats

    hb_dir = heartbeat_dir(office.config.device.state_dir)
    for _ in range(50):
        beats = read_heartbeats(hb_dir)
        if "intake" in beats:
            break
        time.sleep(0.1)
    info = beats["intake"]
    assert not info.stale and info.status == "ok"
    assert info.detail["spool"]["waiting_count"] >= 0
