"""sd_notify without libsystemd: tells systemd a program is ready and still making progress.

Place in the data flow: every long-running program (intake, forward, uplink, panel, and the
central receiver and fleet view) runs under a ``Type=notify`` unit with ``WatchdogSec=``.
systemd starts the unit's dependents only after ``READY=1`` and kills + restarts the program
when ``WATCHDOG=1`` stops arriving: a hung program (deadlocked thread, stuck syscall) is then
treated like a crashed one. The protocol is one AF_UNIX datagram per message to the socket in
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace), so no dependency is
needed. Outside systemd (tests, supervisor, the demo) ``$NOTIFY_SOCKET`` is unset and every
call is a cheap no-op.

Call ``ping()`` from the program's own main loop, never from a helper thread: the point is to
prove that the loop that does the work still turns. ``ping()`` rate-limits itself to half the
watchdog interval, so calling it on every iteration costs one clock read.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["Notifier", "notify"]


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        # abstract namespace: leading NUL instead of '@'
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock:... and other transports are not used on the appliance


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one raw sd_notify message (``"READY=1"``, ``"STATUS=..."``); False if not under
    systemd. Errors other than 'no socket configured' propagate: a misconfigured
    NotifyAccess= should be loud in the journal, not silently ignored."""
    env = os.environ if env is None else env
    addr = _address(env.get("NOTIFY_SOCKET", ""))
    if addr is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(message.encode(), addr)
    return True


class Notifier:
    """One program's line to systemd: readiness, watchdog pings, status text, stopping.

    The socket is opened once and kept (a program pings for months). The watchdog interval
    comes from ``$WATCHDOG_USEC`` and applies only if ``$WATCHDOG_PID`` is unset or is this
    process (systemd sets it so a child that inherits the environment does not ping for its
    parent).
    """

    def __init__(self, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        self._addr = _address(env.get("NOTIFY_SOCKET", ""))
        self._clock = clock
        self._sock: socket.socket | None = None
        self._last_ping: float | None = None
        self.watchdog_interval_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 1e6

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def send(self, message: str) -> bool:
        if self._addr is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.sendto(message.encode(), self._addr)
        return True

    def ready(self, status: str | None = None) -> bool:
        """After startup recovery is done and the program serves: dependents may start now."""
        msg = "READY=1" if status is None else f"READY=1\nSTATUS={status}"
        ok = self.send(msg)
        self._last_ping = self._clock()
        return ok

    def ping(self, *, force: bool = False) -> bool:
        """WATCHDOG=1 if half the interval has passed since the last one (or ``force``)."""
        if self._addr is None or self.watchdog_interval_s is None:
            return False
        now = self._clock()
        if (not force and self._last_ping is not None
                and now - self._last_ping < self.watchdog_interval_s / 2):
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """Free text shown by ``systemctl status`` (e.g. "12 waiting, uplink eth0")."""
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
