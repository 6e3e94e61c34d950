"""A long-lived stream from the office device to the central sink, like the forwarder's.

Run inside the device namespace: ``flow_client.py ADDR PORT RUN_DIR LOG.jsonl``. Sends 1 kB
every 10 ms; when the connection fails (TCP_USER_TIMEOUT 1 s) or uplink.json announces a
switch (UplinkWatcher), it drops the connection (or the connect in progress) and connects
again, so the new connection takes the new default route. Logs each connect with its source
address.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from pathlib import Path

from edge.uplink.announce import UplinkChange, UplinkWatcher

addr, port, run_dir, log_path = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
log = open(log_path, "a", buffering=1)  # noqa: SIM115
current: list[socket.socket] = []
lock = threading.Lock()


def note(**kw: object) -> None:
    kw["t"] = time.clock_gettime(time.CLOCK_BOOTTIME)
    log.write(json.dumps(kw) + "\n")


def on_change(change: UplinkChange) -> None:
    if change.switched:
        note(event="switch", active=change.current.active)
        with lock:
            for s in current:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


watcher = UplinkWatcher(run_dir)
watcher.on_change(on_change)
chunk = b"x" * 1024
while True:
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 1000)
    s.settimeout(1.0)
    with lock:
        # registered before connect(): a switch also aborts an attempt still going out
        # through the old link
        current.append(s)
    try:
        s.connect((addr, port))
    except OSError as e:
        note(event="connect_failed", error=str(e))
        with lock:
            current.remove(s)
        s.close()
        time.sleep(0.05)
        continue
    note(event="connected", src=s.getsockname()[0])
    try:
        while True:
            s.sendall(chunk)
            time.sleep(0.01)
    except OSError as e:
        note(event="dropped", error=str(e))
    with lock:
        current.remove(s)
    s.close()
