"""The intake API over real HTTP on loopback against a real intake process."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from edge.intake.tokens import TokenStore
from tests.support.office import Office

from .snapshot import spool_snapshot


def put(office: Office, rid: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.put(f"{office.url}/v1/recordings/{rid}", content=body,
                     headers={**office.auth, **headers}, timeout=30)


def test_upload_is_acknowledged_with_a_receipt_and_retries_are_idempotent(office: Office) -> None:
    body = b"photo+fingerprints" * 1000
    r = put(office, "nik-3171-0001", body, **{"X-Operator": "siti",
                                              "X-Captured-At": "2026-12-02T09:15:00+07:00"})
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()
    assert receipt["size"] == len(body) and receipt["state"] == "stored"
    assert r.headers["location"] == "/v1/recordings/nik-3171-0001"

    again = put(office, "nik-3171-0001", body)
    assert again.status_code == 200 and again.json()["sequence"] == receipt["sequence"]

    clash = put(office, "nik-3171-0001", body + b"!")
    assert clash.status_code == 409 and clash.json()["error"] == "spool.conflict"

    state = httpx.get(f"{office.url}/v1/recordings/nik-3171-0001", headers=office.auth).json()
    assert state["state"] == "stored" and state["workstation"] == "ws-01"
    assert "central_receipt" not in state


def test_status_summarises_the_spool(office: Office) -> None:
    put(office, "status-probe", b"x" * 100)
    s = httpx.get(f"{office.url}/v1/status", headers=office.auth).json()
    assert s["waiting_count"] >= 1 and s["free_bytes"] > 0 and s["device_id"] == "kec-test-01"
    assert s["oldest_waiting_age_s"] is not None


def test_content_digest_is_checked(office: Office) -> None:
    body = b"iris" * 999
    good = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert put(office, "digest-ok", body, **{"Content-Digest": f"sha-256=:{good}:"}
               ).status_code == 201
    before = spool_snapshot(office.config.spool.dir)
    bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    r = put(office, "digest-bad", body, **{"Content-Digest": f"sha-256=:{bad}:"})
    assert r.status_code == 422 and r.json()["error"] == "intake.digest_mismatch"
    assert spool_snapshot(office.config.spool.dir) == before


BAD_IDS = ["%2E%2E", ".hidden", "a%2Fb", "a%20b", "x" * 200, "%C3%A9", "-lead"]


@pytest.mark.parametrize("rid", BAD_IDS)
def test_unsafe_ids_are_refused(office: Office, rid: str) -> None:
    before = spool_snapshot(office.config.spool.dir)
    r = put(office, rid, b"body")
    assert r.status_code == 400 and r.json()["error"] == "intake.bad_id", r.text
    assert spool_snapshot(office.config.spool.dir) == before


def test_tokens(office: Office) -> None:
    before = spool_snapshot(office.config.spool.dir)
    url = f"{office.url}/v1/recordings/tok-1"
    r = httpx.put(url, content=b"x")
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    r = httpx.put(url, content=b"x", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"] == "auth.unknown_token"
    store = TokenStore(office.config.intake.tokens_file)
    t = store.add("ws-revoked")
    store.revoke("ws-revoked")
    r = httpx.put(url, content=b"x", headers={"Authorization": f"Bearer {t}"})
    assert r.status_code == 403 and "ws-revoked" in r.json()["message"]
    assert httpx.get(url).status_code == 401
    assert spool_snapshot(office.config.spool.dir) == before
    t2 = store.add("ws-02")  # takes effect without a restart
    r = httpx.put(url, content=b"x", headers={"Authorization": f"Bearer {t2}"})
    assert r.status_code == 201


def test_chunked_upload_without_length_is_refused(office: Office) -> None:
    def gen() -> Iterator[bytes]:
        yield b"abc"

    before = spool_snapshot(office.config.spool.dir)
    r = httpx.put(f"{office.url}/v1/recordings/chunked", content=gen(), headers=office.auth)
    assert r.status_code == 411
    assert spool_snapshot(office.config.spool.dir) == before


def raw_request(office: Office, head: str, body: bytes = b"", close_after: bool = False,
                wait: float = 10.0) -> bytes:
    s = socket.create_connection(("127.0.0.1", office.port))
    s.settimeout(wait)
    s.sendall(head.encode() + body)
    if close_after:
        s.close()
        return b""
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out and b'"message"' in out:
                break
    finally:
        s.close()
    return out


def _head(office: Office, rid: str, length: int) -> str:
    return (f"PUT /v1/recordings/{rid} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{office.token}\r\nContent-Length: {length}\r\n\r\n")


def test_oversized_upload_is_refused_before_the_body(office: Office) -> None:
    before = spool_snapshot(office.config.spool.dir)
    out = raw_request(office, _head(office, "huge", 10 * 1024**3))  # no body sent at all
    assert out.startswith(b"HTTP/1.1 413")
    assert spool_snapshot(office.config.spool.dir) == before


def test_short_body_then_disconnect_stores_nothing(office: Office) -> None:
    before = spool_snapshot(office.config.spool.dir)
    raw_request(office, _head(office, "short", 100_000), b"x" * 50_000, close_after=True)
    time.sleep(0.5)
    assert spool_snapshot(office.config.spool.dir) == before
    assert put(office, "short", b"x" * 100_000).status_code == 201  # the retry succeeds


def test_stalled_client_times_out_and_stores_nothing(office: Office) -> None:
    before = spool_snapshot(office.config.spool.dir)
    out = raw_request(office, _head(office, "stall", 1000), b"x" * 10)
    assert out.startswith(b"HTTP/1.1 408"), out[:200]
    assert spool_snapshot(office.config.spool.dir) == before


def test_bad_metadata_is_refused(office: Office) -> None:
    before = spool_snapshot(office.config.spool.dir)
    r = put(office, "meta", b"x", **{"X-Operator": "a" * 300})
    assert r.status_code == 400 and r.json()["error"] == "intake.bad_metadata"
    r = put(office, "meta", b"x", **{"X-Priority": "now!"})
    assert r.status_code == 400
    assert spool_snapshot(office.config.spool.dir) == before


def test_full_spool_answers_507_and_keeps_what_it_has(fresh_office: Office) -> None:
    from tests.support.office import make_office

    o = make_office(fresh_office.root / "small", spool={"quota_bytes": "200KiB"},
                    intake={"max_recording_bytes": "200KiB"})
    o.start_intake()
    try:
        assert put(o, "one", b"1" * 90_000).status_code == 201
        assert put(o, "two", b"2" * 90_000).status_code == 201
        before = spool_snapshot(o.config.spool.dir)
        r = put(o, "three", b"3" * 90_000)
        assert r.status_code == 507 and "keep this recording on the workstation" in \
            r.json()["message"]
        assert spool_snapshot(o.config.spool.dir) == before
        assert httpx.get(f"{o.url}/v1/recordings/one", headers=o.auth).json()["state"] == \
            "stored"
    finally:
        o.stop()


def test_openapi_is_served(office: Office) -> None:
    doc = httpx.get(f"{office.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "put" in doc["paths"]["/v1/recordings/{recording_id}"]
