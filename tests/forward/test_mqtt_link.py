"""The forwarder's MQTT link against a real broker, behind a TCP relay that can go silent the
way an uplink does when its carrier drops or its ISP blackholes it: nothing is read, nothing
comes back, and the link's send buffer fills with chunks that will never leave."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.forward.config import MqttConfig
from edge.forward.mqtt_link import Connected, Disconnected, LinkEvent, MqttLink
from tests.support.broker import Broker

DEVICE = "kec-link-01"
KEEPALIVE_S = 60


class Relay:
    """127.0.0.1 relay to the broker. ``go_silent()`` freezes the connections open now (a
    dead uplink); later connections pass again (the new uplink)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.lsock = socket.socket()
        # small buffers on the relay's side: the link's own send buffer is what fills
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = int(self.lsock.getsockname()[1])
        self.silent: list[threading.Event] = []
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            silent = threading.Event()
            self.silent.append(silent)
            self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, silent), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, silent: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while not silent.is_set():
                src.settimeout(0.05)
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data or silent.is_set():
                    break
                dst.sendall(data)
        silent.wait()  # a dead path neither reads nor closes

    def go_silent(self) -> None:
        for ev in self.silent:
            ev.set()

    def close(self) -> None:
        self.lsock.close()
        for ev in self.silent:
            ev.set()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.close()


def next_event(events: queue.Queue[LinkEvent], kind: type, timeout: float) -> LinkEvent:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            ev = events.get(timeout=left)
        except queue.Empty:
            break
        if isinstance(ev, kind):
            return ev
    raise AssertionError(f"no {kind.__name__} within {timeout} s")


@pytest.fixture
def relay(broker: Broker) -> Iterator[Relay]:
    r = Relay((broker.host, broker.port))
    yield r
    r.close()


def make_link(broker: Broker, port: int, tmp_path: Path, *, keepalive_s: int,
              session_expiry_s: int, max_inflight: int
              ) -> tuple[MqttLink, queue.Queue[LinkEvent]]:
    """A started link for DEVICE to 127.0.0.1:``port`` and the queue its events arrive on."""
    ident = broker.identity(DEVICE)
    mc = MqttConfig(host="127.0.0.1", port=port, ca=broker.ca_path, cert=ident.cert,
                    key=ident.key, client_id=DEVICE, keepalive_s=keepalive_s,
                    session_expiry_s=session_expiry_s, connect_timeout_s=5.0,
                    receipt_public_key=tmp_path / "unused.pub")
    events: queue.Queue[LinkEvent] = queue.Queue()
    link = MqttLink(mc, events.put, will=(f"edge/{DEVICE}/up/status", b"offline"),
                    subscriptions=[f"edge/{DEVICE}/down/custody/#"], max_inflight=max_inflight)
    link.start()
    return link, events


def test_link_switches_nagle_off_so_small_packets_are_not_held_back(broker: Broker,
                                                                    tmp_path: Path) -> None:
    """Offers, PUBACKs for States and the like are small; with Nagle on each one waits for
    the broker's delayed ACK while the custody window stands still (bench/custody_chain.py
    measured 2-3x less goodput)."""
    link, events = make_link(broker, broker.port, tmp_path, keepalive_s=20,
                             session_expiry_s=0, max_inflight=20)
    try:
        link.request_connect()
        assert isinstance(events.get(timeout=15), Connected)
        sock = link.client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        link.stop()


def test_a_drop_on_a_dead_path_ends_the_connection_without_waiting_for_keepalive(
        broker: Broker, relay: Relay, tmp_path: Path) -> None:
    link, events = make_link(broker, relay.port, tmp_path, keepalive_s=KEEPALIVE_S,
                             session_expiry_s=300, max_inflight=200)
    try:
        link.request_connect()
        next_event(events, Connected, 10)
        relay.go_silent()  # the uplink dies under a transfer in progress
        chunk = b"c" * (128 * 1024)
        for i in range(100):  # 12.5 MiB: more than the socket buffers hold
            assert link.publish(f"edge/{DEVICE}/up/custody/r/{i}", chunk) is not None
        time.sleep(0.5)  # paho's thread has written what the buffers take, and is stuck

        t = time.monotonic()
        link.drop()  # the uplink daemon announced a switch
        ev = next_event(events, Disconnected, KEEPALIVE_S / 4)
        # Without shutting the socket, paho holds the dead connection until keepalive
        # (60 s here) because its DISCONNECT waits behind the unsent chunks.
        assert isinstance(ev, Disconnected) and ev.reason == "uplink switched"
        assert time.monotonic() - t < KEEPALIVE_S / 4
        assert link.publish(f"edge/{DEVICE}/up/status", b"x") is None  # nothing goes out

        link.request_connect()  # over the new path, the session is still there
        ev = next_event(events, Connected, 10)
        assert isinstance(ev, Connected) and ev.session_present
    finally:
        link.stop()
