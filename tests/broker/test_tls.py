"""Only fleet certificates get in: the broker's TLS door, proved with real handshakes."""

import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from edge.pki import (
    RevocationList,
    build_csr,
    create_fleet_ca,
    generate_device_key,
    save_certificate,
    save_private_key,
    write_crl,
)
from tests.support.broker import Broker, BrokerError, Identity, publish_and_wait, start_broker

# MQTT 3.1.1 CONNECT, clean session, keepalive 60, client id "probe".
CONNECT = b"\x10\x11\x00\x04MQTT\x04\x02\x00\x3c\x00\x05probe"
CONNACK = 0x20


def answer_to_connect(sock: socket.socket) -> bytes:
    """Send an MQTT CONNECT and return what comes back (b"" = closed, or alert text)."""
    try:
        sock.sendall(CONNECT)
        return sock.recv(16)
    except (ssl.SSLError, OSError) as e:
        return f"refused: {e}".encode()


def tls_probe(broker: Broker, cert: Path | None = None, key: Path | None = None,
              port: int | None = None) -> bytes:
    ctx = ssl.create_default_context(cafile=str(broker.ca_path))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    with socket.create_connection((broker.host, port or broker.port), timeout=5) as raw:
        try:
            tls = ctx.wrap_socket(raw, server_hostname=broker.host)
        except (ssl.SSLError, OSError) as e:
            return f"refused at handshake: {e}".encode()
        with tls:
            return answer_to_connect(tls)


def foreign_identity(tmp_path: Path, name: str = "kec-a") -> Identity:
    """A well-formed client certificate for a fleet name, from a CA the broker never saw."""
    other = create_fleet_ca("edge test fleet CA")  # even the same CA name
    key = generate_device_key()
    cert = other.issue_client_certificate(build_csr(key, name))
    ident = Identity(name, tmp_path / "foreign.pem", tmp_path / "foreign.key",
                     cert.serial_number)
    save_private_key(ident.key, key)
    save_certificate(ident.cert, cert)
    return ident


LISTENERS = ["device", "service"]


def port_of(broker: Broker, listener: str) -> int:
    """The device listener, or the central services' one: the same TLS door rules apply."""
    if listener == "device":
        return broker.port
    assert broker.service_port is not None
    return broker.service_port


@pytest.mark.parametrize("listener", LISTENERS)
def test_fleet_certificate_gets_a_connack(broker: Broker, listener: str) -> None:
    ident = broker.identity("kec-a")
    answer = tls_probe(broker, ident.cert, ident.key, port_of(broker, listener))
    assert answer[:1] == bytes([CONNACK])


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_both_accepted(broker: Broker, version: ssl.TLSVersion) -> None:
    """Older device OpenSSL builds may stop at 1.2; tls_version tlsv1.2 is a floor."""
    ident = broker.identity("kec-a")
    ctx = ssl.create_default_context(cafile=str(broker.ca_path))
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection((broker.host, broker.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=broker.host) as tls:
        assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                 ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        assert answer_to_connect(tls)[:1] == bytes([CONNACK])


@pytest.mark.parametrize("listener", LISTENERS)
def test_certificate_from_an_unknown_ca_is_refused_at_tls(broker: Broker, tmp_path: Path,
                                                          listener: str) -> None:
    ident = foreign_identity(tmp_path)
    port = port_of(broker, listener)
    answer = tls_probe(broker, ident.cert, ident.key, port)
    assert answer == b"" or answer.startswith(b"refused")  # an alert or a close, no MQTT
    with pytest.raises(BrokerError, match="refused"):
        broker.connect(ident, port=port)
    assert "certificate verify failed" in broker.log()


@pytest.mark.parametrize("listener", LISTENERS)
def test_client_without_a_certificate_is_refused(broker: Broker, listener: str) -> None:
    port = port_of(broker, listener)
    answer = tls_probe(broker, port=port)
    assert answer == b"" or answer.startswith(b"refused")
    with pytest.raises(BrokerError, match="refused"):
        broker.connect(None, port=port)


@pytest.mark.parametrize("listener", LISTENERS)
def test_plain_tcp_is_refused(broker: Broker, listener: str) -> None:
    with socket.create_connection((broker.host, port_of(broker, listener)), timeout=5) as s:
        answer = answer_to_connect(s)
    assert answer[:1] != bytes([CONNACK])


def listening_ports(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = str(fd.readlink()) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A = LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_two_tls_ports_are_the_only_listeners(broker: Broker) -> None:
    """The device listener and the central services' listener; no default plain 1883."""
    assert listening_ports(broker.pid) == {broker.port, broker.service_port}


def test_a_server_certificate_is_not_a_client_identity(broker: Broker, tmp_path: Path) -> None:
    """EKU matters: the broker's own certificate (serverAuth only) cannot log in."""
    ident = Identity("localhost", broker.server_cert, broker.server_key, 0)
    with pytest.raises(BrokerError, match="refused"):
        broker.connect(ident)


def test_expired_client_certificate_is_refused(broker: Broker, tmp_path: Path) -> None:
    key = generate_device_key()
    past = datetime.now(UTC) - timedelta(days=10)
    cert = broker.ca.issue_client_certificate(build_csr(key, "kec-a"), now=past,
                                              validity=timedelta(days=1))
    ident = Identity("kec-a", tmp_path / "old.pem", tmp_path / "old.key", cert.serial_number)
    save_private_key(ident.key, key)
    save_certificate(ident.cert, cert)
    with pytest.raises(BrokerError, match="refused"):
        broker.connect(ident)


def test_revoked_device_is_refused_once_the_crl_is_loaded(broker: Broker) -> None:
    broker.connect("kec-a").disconnect()
    broker.connect("kec-b")

    broker.revoke("kec-a")  # revocation list → CRL file → SIGHUP

    with pytest.raises(BrokerError, match="refused"):
        broker.connect("kec-a", client_id="kec-a-again")
    broker.connect("kec-b", client_id="kec-b-2")  # everyone else still gets in


def test_crl_without_sighup_is_not_applied(broker: Broker) -> None:
    ident = broker.identity("kec-a")
    broker.revocations.revoke(x509.load_pem_x509_certificate(ident.cert.read_bytes()))
    assert broker.crl_path is not None
    write_crl(broker.crl_path, broker.revocations.build_crl(broker.ca))
    broker.connect("kec-a")  # still accepted: Mosquitto reads the CRL at start and SIGHUP only
    broker.reload()
    with pytest.raises(BrokerError):
        broker.connect("kec-a", client_id="kec-a-2")


def test_revocation_does_not_cut_an_open_connection_but_a_restart_does(
        broker: Broker) -> None:
    """Mosquitto 2.0.11 checks the CRL at handshake only: a revoked device that is already
    connected keeps publishing after SIGHUP. Cutting it off takes a broker restart."""
    device = broker.connect("kec-a")
    lost = threading.Event()
    device.on_disconnect = lambda *args: lost.set()

    broker.revoke("kec-a")
    assert not lost.wait(0.5)
    assert not publish_and_wait(device, "edge/kec-a/up/status", b"still here").is_failure

    broker.restart()
    assert lost.wait(5)
    with pytest.raises(BrokerError):
        broker.connect("kec-a", client_id="kec-a-2")


def test_an_expired_crl_locks_out_every_device_until_a_fresh_one(broker: Broker,
                                                                  tmp_path: Path) -> None:
    broker.connect("kec-a", client_id="before")
    assert broker.crl_path is not None
    stale = RevocationList(tmp_path / "r.json").build_crl(
        broker.ca, now=datetime.now(UTC) - timedelta(days=15), validity=timedelta(days=14))
    write_crl(broker.crl_path, stale)
    broker.reload()
    for name in ("kec-a", "kec-b", "central-receiver"):
        with pytest.raises(BrokerError, match="refused"):
            broker.connect(name)

    write_crl(broker.crl_path, broker.revocations.build_crl(broker.ca))
    broker.reload()
    broker.connect("kec-a")


def test_a_broker_bound_elsewhere_carries_that_address_in_its_certificate(
        tmp_path: Path) -> None:
    # A broker in another network namespace is dialled at its own address (e.g. 203.0.113.10
    # in tests/netns); the client verifies that address against the server certificate.
    with start_broker(tmp_path, host="127.0.0.2") as other:
        assert other.host == "127.0.0.2"
        cert = x509.load_pem_x509_certificate(other.server_cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {
            "127.0.0.1", "127.0.0.2"}
        ident = other.identity("kec-a")
        assert tls_probe(other, ident.cert, ident.key)[:1] == bytes([CONNACK])
        with socket.socket() as s:  # bound there, not on every address
            assert s.connect_ex(("127.0.0.1", other.port)) != 0
