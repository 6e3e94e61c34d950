"""``edge-central list`` and ``edge-central open`` over a real store: the listing, the
original bytes back, and refusals that write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.central.cli import main
from edge.central.store import CentralStore
from edge.custody.receipt import sign_receipt
from edge.custody.receiver import OfferRecord
from edge.seal.keys import write_sealing_keys
from tests.central.helpers import Fleet, Sealed, plaintext, seal, write_receipt_key
from tests.support.office import central_keys

D1, D2 = "kec-3171-01", "kec-3171-02"


class Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.fleet = Fleet.create(root / "pki")
        self.data = root / "custody"
        self.receipt_key = write_receipt_key(root / "receipt.key")
        write_sealing_keys(central_keys(), root / "seal.key", root / "seal.pub")
        self.args = ["--data-dir", str(self.data), "--ca", str(self.fleet.ca_path),
                     "--device-certs", str(self.fleet.certs_dir)]

    def commit(self, rec: Sealed, *, with_signer: bool = True) -> None:
        with CentralStore(self.data) as store:
            store.save_offer(rec.device_id, rec.recording_id,
                             OfferRecord(rec.seq, 1, len(rec.sealed), rec.sha256, rec.manifest))
            store.put_chunk(rec.device_id, rec.recording_id, 0, 0, rec.sealed)
            receipt = sign_receipt(self.receipt_key, device_id=rec.device_id,
                                   recording_id=rec.recording_id, sealed_sha256=rec.sha256,
                                   sealed_size=len(rec.sealed), received_at_ms=1,
                                   receiver_id="rx-test")
            cert = (self.fleet.certs_dir / f"{rec.device_id}.crt").read_bytes()
            store.commit(rec.device_id, rec.recording_id, 0, receipt,
                         signer_cert=cert if with_signer else None)

    def open(self, rid: str, out: Path, *extra: str) -> int:
        return main(["open", rid, "--out", str(out), "--sealing-key",
                     str(self.root / "seal.key"), *self.args, *extra])


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.delenv("EDGE_CONFIG", raising=False)
    monkeypatch.delenv("EDGE_CENTRAL_DIR", raising=False)
    return Site(tmp_path)


def test_list_shows_committed_recordings(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    k1, k2 = site.fleet.enrol(D1), site.fleet.enrol(D2)
    a = seal(D1, "nik-1", plaintext(3000), k1, seq=1)
    b = seal(D2, "nik-2", plaintext(70_000, 2), k2, seq=2)
    site.commit(a)
    site.commit(b)
    with CentralStore(site.data) as store:     # offered, not committed: not listed
        store.save_offer(D1, "nik-3", OfferRecord(3, 1, 10, b"\0" * 32, b"{}"))
    assert main(["list", "--json", *site.args]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["device_id"], r["recording_id"]) for r in rows] == [(D1, "nik-1"), (D2, "nik-2")]
    assert rows[1]["sealed_size"] == len(b.sealed)
    assert rows[1]["sealed_sha256"] == b.sha256.hex()
    assert rows[1]["plaintext_size"] == 70_000
    assert rows[1]["receiver_id"] == "rx-test" and rows[1]["committed_at"].endswith("Z")
    assert main(["list", "--json", "--device", D2, *site.args]) == 0
    assert [r["recording_id"] for r in json.loads(capsys.readouterr().out)] == ["nik-2"]
    assert main(["list", "--json", "--limit", "1", *site.args]) == 0
    assert [r["recording_id"] for r in json.loads(capsys.readouterr().out)] == ["nik-2"]
    assert main(["list", *site.args]) == 0
    text = capsys.readouterr().out
    assert "nik-1" in text and "nik-2" in text and "2 recording(s)" in text


def test_open_returns_the_original_bytes(site: Site, tmp_path: Path) -> None:
    data = plaintext(200_000, 5)
    site.commit(seal(D1, "nik-1", data, site.fleet.enrol(D1)))
    out = tmp_path / "out.bin"
    assert site.open("nik-1", out) == 0
    assert out.read_bytes() == data


def test_open_works_after_the_device_renewed_its_certificate(site: Site, tmp_path: Path) -> None:
    data = plaintext(1000)
    site.commit(seal(D1, "nik-1", data, site.fleet.enrol(D1)))
    site.fleet.enrol(D1)              # new key, new certificate in the folder
    assert site.open("nik-1", tmp_path / "out.bin") == 0
    assert (tmp_path / "out.bin").read_bytes() == data


def test_open_without_stored_signer_uses_the_certificate_folder(site: Site,
                                                               tmp_path: Path) -> None:
    data = plaintext(1000)
    site.commit(seal(D1, "nik-1", data, site.fleet.enrol(D1)), with_signer=False)
    assert site.open("nik-1", tmp_path / "out.bin") == 0
    assert (tmp_path / "out.bin").read_bytes() == data


def test_open_refuses_a_tampered_file_and_writes_nothing(
        site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site.commit(seal(D1, "nik-1", plaintext(50_000), site.fleet.enrol(D1)))
    final = site.data / "final" / D1 / "nik-1.seal"
    raw = bytearray(final.read_bytes())
    raw[-100] ^= 1
    final.write_bytes(bytes(raw))
    out = tmp_path / "out.bin"
    assert site.open("nik-1", out) == 1
    assert "seal.hash_mismatch" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.glob(".tmp-*")) == []


def test_open_refuses_an_altered_manifest(site: Site, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    site.commit(seal(D1, "nik-1", plaintext(500), site.fleet.enrol(D1)))
    (site.data / "final" / D1 / "nik-1.manifest").write_bytes(b"{}")
    assert site.open("nik-1", tmp_path / "out.bin") == 1
    assert "central.store_altered" in capsys.readouterr().err
    assert not (tmp_path / "out.bin").exists()


def test_open_is_explicit_about_what_it_cannot_do(site: Site, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = plaintext(500)
    site.commit(seal(D1, "nik-1", data, site.fleet.enrol(D1)))
    site.commit(seal(D2, "nik-1", plaintext(600), site.fleet.enrol(D2)))
    out = tmp_path / "out.bin"
    assert site.open("nik-1", out) == 1
    assert "central.ambiguous" in capsys.readouterr().err
    assert site.open("nik-9", out) == 1
    assert "central.not_found" in capsys.readouterr().err
    assert site.open("nik-1", out, "--device", D1) == 0
    assert out.read_bytes() == data
    assert site.open("nik-1", out, "--device", D1) == 1         # exists
    assert "central.out_exists" in capsys.readouterr().err
    assert site.open("nik-1", out, "--device", D2, "--force") == 0
    assert out.read_bytes() == plaintext(600)


def test_list_without_a_store_says_where_it_looked(site: Site,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", *site.args]) == 1
    assert "no custody store here" in capsys.readouterr().err
