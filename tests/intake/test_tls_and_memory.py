"""HTTPS intake with a certificate, and flat memory for a very large upload."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.office import make_office


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-intake")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    c, k = tmp / "intake.crt", tmp / "intake.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def test_https_intake(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    o = make_office(tmp_path / "o", intake={"tls_cert": str(cert), "tls_key": str(key)})
    o.tls_ca = cert
    o.start_intake()
    try:
        with o.client() as c:
            assert c.put("/v1/recordings/tls-1", content=b"secret").status_code == 201
        try:
            httpx.put(f"http://127.0.0.1:{o.port}/v1/recordings/plain", content=b"x",
                      headers=o.auth)
            raise AssertionError("plain HTTP must not be served when TLS is configured")
        except httpx.TransportError:
            pass
    finally:
        o.stop()


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_memory_stays_flat_for_a_large_upload(tmp_path: Path) -> None:
    o = make_office(tmp_path / "o")
    o.start_intake()
    try:
        assert o.proc is not None
        # warm up every code path first, then measure the peak growth over a big upload
        assert httpx.put(f"{o.url}/v1/recordings/warm", content=b"w" * 4_000_000,
                         headers=o.auth).status_code == 201
        before = _peak_rss_kib(o.proc.pid)
        size = 200 * 1024 * 1024
        block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB

        def body() -> Iterator[bytes]:
            for _ in range(size // len(block)):
                yield block

        r = httpx.put(f"{o.url}/v1/recordings/big", content=body(),
                      headers={**o.auth, "Content-Length": str(size)}, timeout=120)
        assert r.status_code == 201, r.text
        growth_mib = (_peak_rss_kib(o.proc.pid) - before) / 1024
        assert growth_mib < 32, f"peak RSS grew by {growth_mib:.0f} MiB for a 200 MiB upload"
    finally:
        o.stop()


def test_config_refuses_plain_http_on_the_lan(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.office import REPO
    o = make_office(tmp_path / "o")
    cfg = tmp_path / "lan.toml"
    text = o.config_path.read_text().replace('host = "127.0.0.1"', 'host = "0.0.0.0"')
    cfg.write_text(text)
    p = subprocess.run([sys.executable, "-m", "edge", "--config", str(cfg), "intake"],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "config.invalid" in p.stderr and "tls_cert" in p.stderr
