"""Probes against real listeners on loopback, and modem facts through a real process."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.uplink.config import Target
from edge.uplink.modem import MmcliModem, parse_modem
from edge.uplink.probe import Resolver, SocketProber


def make_ca_and_server(tmp: Path, ip: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``ip``; written as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test central CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    ca, cert, key = make_ca_and_server(tmp_path, "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    stop = threading.Event()

    def serve() -> None:
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True) as s:
                    s.settimeout(1.0)
                    s.recv(1)
            except (OSError, ssl.SSLError):
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield lsock.getsockname()[1], ca
    stop.set()
    t.join()
    lsock.close()


def test_tcp_probe_through_loopback_succeeds_and_counts_bytes(
        tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    out = SocketProber(ca=ca).probe("lo", "127.0.0.1", Target("127.0.0.1", port), False, 2.0)
    assert out.ok and out.error == "" and out.kind == "tcp"
    assert out.rtt_ms is not None and out.rtt_ms >= 0
    # SYN + SYN-ACK + ACK + RST, no payload
    assert 180 <= out.wire_bytes <= 300


def test_tls_probe_verifies_the_server_and_costs_more(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    out = SocketProber(ca=ca).probe("lo", "127.0.0.1", Target("127.0.0.1", port), True, 2.0)
    assert out.ok, out.error
    assert out.kind == "tls" and out.wire_bytes > 1000


def test_tls_probe_fails_on_an_untrusted_server(tls_server: tuple[int, Path],
                                                 tmp_path: Path) -> None:
    port, _ = tls_server
    (tmp_path / "other").mkdir()
    other_ca, _, _ = make_ca_and_server(tmp_path / "other", "127.0.0.1")
    out = SocketProber(ca=other_ca).probe("lo", "127.0.0.1", Target("127.0.0.1", port),
                                          True, 2.0)
    assert not out.ok and out.error.startswith("tls")


def test_closed_port_is_refused_fast() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = SocketProber().probe("lo", "127.0.0.1", Target("127.0.0.1", port), False, 2.0)
    assert not out.ok and out.error == "refused"


def test_wrong_interface_or_no_address_fails_without_traffic() -> None:
    p = SocketProber()
    assert p.probe("lo", None, Target("127.0.0.1", 9), False, 1.0).error == "no_address"
    out = p.probe("nosuchif0", "127.0.0.1", Target("127.0.0.1", 9), False, 1.0)
    assert not out.ok and out.error == "no_interface"


def test_resolver_keeps_the_last_address_when_dns_breaks() -> None:
    answers = ["198.51.100.7"]

    def lookup(host: str) -> str:
        if not answers:
            raise OSError("no DNS: the active link is dead")
        return answers.pop(0)

    r = Resolver(ttl_s=0.0, lookup=lookup)
    assert r.resolve("203.0.113.9") == "203.0.113.9"  # literals never hit DNS
    assert r.resolve("mqtt.central.example") == "198.51.100.7"
    assert r.resolve("mqtt.central.example") == "198.51.100.7"  # refresh fails quietly
    assert Resolver(lookup=lookup).resolve("other.example") is None


# --- modem ----------------------------------------------------------------------------------

MM_MODEM = """{"modem": {"dbus-path": "/org/freedesktop/ModemManager1/Modem/0",
 "generic": {"manufacturer": "Quectel", "model": "EG25-G", "state": "connected",
  "access-technologies": ["lte"], "ports": ["cdc-wdm0 (qmi)", "wwan0 (net)"],
  "signal-quality": {"recent": "yes", "value": "67"}},
 "3gpp": {"operator-name": "TELKOMSEL", "operator-code": "51010",
  "registration-state": "home"}}}"""


def test_parse_modem_turns_dashes_into_none() -> None:
    import json
    facts = parse_modem(json.loads(MM_MODEM))
    assert facts["signal_quality"] == 67 and facts["access_technology"] == "lte"
    assert facts["operator"] == "TELKOMSEL" and "wwan0" in facts["ports"]
    empty = parse_modem({"modem": {"generic": {"signal-quality": {"value": "--"}},
                                   "3gpp": {"operator-name": "--"}}})
    assert empty["signal_quality"] is None and empty["operator"] is None


def fake_mmcli(tmp_path: Path, body: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "mmcli"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bindir


def test_modem_facts_through_the_mmcli_process(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "modem.json").write_text(MM_MODEM)
    bindir = fake_mmcli(tmp_path, f"""
case "$1" in
  -L) echo '{{"modem-list": ["/org/freedesktop/ModemManager1/Modem/0"]}}' ;;
  -m) cat {tmp_path / "modem.json"} ;;
esac
""")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    facts = MmcliModem("wwan0").read()
    assert facts is not None and facts["model"] == "EG25-G"


def test_modemmanager_not_running_or_absent_leaves_modem_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = fake_mmcli(tmp_path, "echo \"error: couldn't find the ModemManager process in "
                                  "the bus\" >&2; exit 1\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    m = MmcliModem("wwan0")
    assert m.available and m.read() is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    absent = MmcliModem("wwan0")
    assert not absent.available and absent.read() is None
