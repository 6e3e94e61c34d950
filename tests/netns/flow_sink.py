"""A TCP sink for netns tests: counts bytes received per peer address into a JSON file.

Run inside the central namespace: ``flow_sink.py ADDR PORT OUT.json``. The file is replaced
whole every 50 ms: {"peers": {"192.0.2.2": bytes, ...}, "t": boottime}.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time

addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
peers: dict[str, int] = {}
lock = threading.Lock()


def serve(conn: socket.socket, peer: str) -> None:
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            with lock:
                peers[peer] = peers.get(peer, 0) + len(data)


def dump() -> None:
    while True:
        with lock:
            doc = {"peers": dict(peers), "t": time.clock_gettime(time.CLOCK_BOOTTIME)}
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, out)
        time.sleep(0.05)


lsock = socket.socket()
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind((addr, port))
lsock.listen(64)
threading.Thread(target=dump, daemon=True).start()
while True:
    c, (ip, _) = lsock.accept()
    threading.Thread(target=serve, args=(c, ip), daemon=True).start()
