"""End-to-end link probes: a TCP connect (now and then a full TLS handshake) to the central
broker and a second target, bound to one interface so the idle standby link is tested too.

The uplink daemon runs one probe at a time per link on a worker thread and feeds each
``ProbeOutcome`` to the policy. Why end to end: a HiLink modem keeps its USB Ethernet carrier
and hands out DHCP while its cellular side is dead, and an office router keeps its LAN port up
while the line behind it is down; only traffic to the central site tells.

Why bound this way: SO_BINDTODEVICE makes the packets leave through the link under test, and
binding the link's own source address makes the ``from <addr> lookup <table>`` rule route them
(and lets replies pass strict rp_filter) even while that link is not the default route.

Cost: a TCP probe is SYN, SYN-ACK, ACK and our RST (SO_LINGER 0, no FIN exchange, no
TIME_WAIT): about 230 bytes on the wire. A TLS probe adds the handshake (a few kB, mostly the
server's certificate chain); it runs every ``tls_every_s`` and after any TLS failure until one
succeeds, so a captive portal or a transparent proxy that accepts every TCP connection is
still caught. ``wire_bytes`` is estimated from the kernel's TCP_INFO (segments and payload
bytes each way) so the daemon can report probe bytes per month from real sockets.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from edge.uplink.announce import boottime
from edge.uplink.config import Target

__all__ = [
    "TCP_PROBE_BYTES_GUESS",
    "TLS_PROBE_BYTES_GUESS",
    "ProbeOutcome",
    "Prober",
    "Resolver",
    "SocketProber",
    "tcp_wire_bytes",
]

log = logging.getLogger("edge.uplink.probe")

# Used for the monthly estimate until real probes have been measured.
TCP_PROBE_BYTES_GUESS: Final = 230
TLS_PROBE_BYTES_GUESS: Final = 5000

_IP_TCP_HEADER: Final = 52     # IPv4 20 + TCP 20 + timestamps option 12
_SYN_OPTIONS_EXTRA: Final = 8  # SYN and SYN-ACK carry MSS, SACK-permitted, window scale
SO_BINDTODEVICE: Final = getattr(socket, "SO_BINDTODEVICE", 25)


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool
    kind: str               # "tcp" or "tls"
    target: str             # "host:port"
    started_at: float       # boottime
    finished_at: float
    rtt_ms: float | None    # connect time (tcp) or connect + handshake (tls)
    error: str              # "" or a short reason: timeout, refused, unreachable, tls: ...
    wire_bytes: int         # both directions, IP level, estimated from TCP_INFO


class Prober(Protocol):
    def probe(self, ifname: str, source: str | None, target: Target, tls: bool,
              timeout: float) -> ProbeOutcome: ...


def tcp_wire_bytes(sock: socket.socket, *, rst: bool = True) -> int | None:
    """Bytes this connection has put on the wire both ways, from TCP_INFO (Linux >= 4.19)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    except OSError:
        return None
    if len(info) < 208:
        return None
    bytes_received = struct.unpack_from("Q", info, 128)[0]
    segs_out, segs_in = struct.unpack_from("II", info, 136)
    bytes_sent = struct.unpack_from("Q", info, 200)[0]
    total = bytes_sent + bytes_received + (segs_out + segs_in) * _IP_TCP_HEADER
    if segs_out:
        total += _SYN_OPTIONS_EXTRA
    if segs_in:
        total += _SYN_OPTIONS_EXTRA
    if rst and segs_in:
        total += _IP_TCP_HEADER
    return int(total)


class Resolver:
    """Target names to IPv4 addresses without ever blocking a probe after the first answer.

    A name is resolved through the system resolver once, then refreshed in the background
    every ``ttl_s``; a failed refresh keeps the old address. Otherwise a silently dead active
    link would also break DNS and make the healthy standby link's probes fail with it.
    """

    def __init__(self, ttl_s: float = 300.0,
                 lookup: Callable[[str], str] | None = None) -> None:
        self.ttl_s = ttl_s
        self._lookup = lookup or _system_lookup
        self._cache: dict[str, tuple[str, float]] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()

    def resolve(self, host: str) -> str | None:
        with contextlib.suppress(ValueError):
            return str(ipaddress.IPv4Address(host))
        with self._lock:
            hit = self._cache.get(host)
        if hit is None:
            try:
                addr = self._lookup(host)
            except OSError as e:
                log.warning("cannot resolve probe target %s: %s", host, e)
                return None
            with self._lock:
                self._cache[host] = (addr, time.monotonic())
            return addr
        addr, when = hit
        if time.monotonic() - when > self.ttl_s:
            self._refresh_later(host)
        return addr

    def _refresh_later(self, host: str) -> None:
        with self._lock:
            if host in self._refreshing:
                return
            self._refreshing.add(host)

        def run() -> None:
            try:
                addr = self._lookup(host)
                with self._lock:
                    self._cache[host] = (addr, time.monotonic())
            except OSError as e:
                log.info("refreshing %s failed (%s); keeping the last address", host, e)
            finally:
                with self._lock:
                    self._refreshing.discard(host)

        threading.Thread(target=run, name=f"resolve-{host}", daemon=True).start()


def _system_lookup(host: str) -> str:
    infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    return str(infos[0][4][0])


def _error_key(e: BaseException) -> str:
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"tls: {e.verify_message or 'certificate not trusted'}"
    if isinstance(e, ssl.SSLError):
        return f"tls: {e.reason or e}"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "unreachable"
    if isinstance(e, OSError) and e.errno == errno.ENODEV:
        return "no_interface"
    if isinstance(e, OSError) and e.errno == errno.EADDRNOTAVAIL:
        return "no_address"
    if isinstance(e, OSError):
        return f"{errno.errorcode.get(e.errno or 0, 'error')}".lower()
    return type(e).__name__


class SocketProber:
    """The real prober: kernel sockets bound to the link, Python's ssl for TLS."""

    def __init__(self, *, ca: Path | None = None, cert: Path | None = None,
                 key: Path | None = None, resolver: Resolver | None = None,
                 clock: Callable[[], float] = boottime) -> None:
        self.resolver = resolver or Resolver()
        self.clock = clock
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None and key is not None and cert.exists() and key.exists():
            # The broker asks every client for a certificate; offer the device's own.
            ctx.load_cert_chain(str(cert), str(key))
        self.tls_context = ctx

    def probe(self, ifname: str, source: str | None, target: Target, tls: bool,
              timeout: float) -> ProbeOutcome:
        kind = "tls" if tls else "tcp"
        start = self.clock()
        t0 = time.monotonic()

        def done(ok: bool, error: str, wire: int) -> ProbeOutcome:
            rtt = (time.monotonic() - t0) * 1000.0 if ok else None
            return ProbeOutcome(ok=ok, kind=kind, target=target.label, started_at=start,
                                finished_at=self.clock(), rtt_ms=rtt, error=error,
                                wire_bytes=wire)

        if source is None:
            return done(False, "no_address", 0)
        addr = self.resolver.resolve(target.host)
        if addr is None:
            return done(False, "dns", 0)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        wire = 0
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((source, 0))
            sock.settimeout(timeout)
            try:
                sock.connect((addr, target.port))
            except OSError as e:
                wire = tcp_wire_bytes(sock, rst=False) or 60
                return done(False, _error_key(e), wire)
            if not tls:
                wire = tcp_wire_bytes(sock) or TCP_PROBE_BYTES_GUESS
                return done(True, "", wire)
            remaining = timeout - (time.monotonic() - t0)
            if remaining <= 0:
                wire = tcp_wire_bytes(sock) or TCP_PROBE_BYTES_GUESS
                return done(False, "timeout", wire)
            sock.settimeout(remaining)
            ssock = self.tls_context.wrap_socket(
                sock, server_hostname=target.server_name or target.host,
                do_handshake_on_connect=False)
            sock = ssock
            try:
                ssock.do_handshake()
            except (OSError, ssl.SSLError) as e:
                wire = tcp_wire_bytes(ssock) or TLS_PROBE_BYTES_GUESS
                return done(False, _error_key(e), wire)
            wire = tcp_wire_bytes(ssock) or TLS_PROBE_BYTES_GUESS
            return done(True, "", wire)
        except OSError as e:
            return done(False, _error_key(e), wire)
        finally:
            # RST instead of FIN: fewer packets and no TIME_WAIT on either side.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
