"""What every client of the central broker sets on its connection (the office forwarder and
the central receiver alike).

paho leaves Nagle's algorithm on. The custody protocol is request/answer (offers, PUBACKs,
the receiver's States slide each device's window), so every small packet held back for the
peer's delayed ACK stalls the window (bench/custody_chain.py: 2-3x goodput with it off).
"""

from __future__ import annotations

import contextlib
import socket

import paho.mqtt.client as mqtt

__all__ = ["set_nodelay"]


def set_nodelay(client: mqtt.Client) -> None:
    """Switch Nagle's algorithm off on the client's connected socket."""
    sock = client.socket()
    if isinstance(sock, socket.socket):   # an SSLSocket is one
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
