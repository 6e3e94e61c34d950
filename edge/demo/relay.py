"""A TCP relay standing in for the office's uplink in the all-in-one demo.

The forwarder connects to the relay, the relay to the broker. ``cut()`` behaves like the
wired line dying: every open connection is torn down and new ones hang silently (the TLS
handshake times out, as over a dead link) until ``restore()``.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

__all__ = ["UplinkRelay"]


class UplinkRelay:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self._listen = socket.create_server((host, 0))
        self.host, self.port = self._listen.getsockname()[:2]
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.bytes_up = 0
        self.bytes_down = 0
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def restore(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for s in held:  # those attempts timed out long ago on the device side
            with contextlib.suppress(OSError):
                s.close()
        self._up.set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self.restore()
        self._listen.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            if not self._up.is_set():
                with self._lock:
                    self._held.append(client)  # silent: like packets into a dead line
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, server)
        sel.register(server, selectors.EVENT_READ, client)
        try:
            while True:
                for key, _ in sel.select(timeout=1.0):
                    src = key.fileobj
                    dst = key.data
                    assert isinstance(src, socket.socket)
                    data = src.recv(256 * 1024)
                    if not data:
                        return
                    dst.sendall(data)
                    if src is client:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                if self._stop.is_set():
                    return
        except OSError:
            return
        finally:
            sel.close()
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock, contextlib.suppress(ValueError):
                self._pairs.remove((client, server))
