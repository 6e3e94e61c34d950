"""Announcing the uplink state to the rest of the appliance: ``state_dir/run/uplink.json``.

Writer: the uplink daemon (``Announcer``). Readers: the forwarder (``UplinkWatcher``: drop the
MQTT connection at once when traffic moves to another link, and obey ``metered_policy``), the
panel and the status page (``read_status``).

The file is always replaced whole (temp file, rename), so a reader never sees half of it.
A switch or a metered-policy change is also fsynced (file and directory) so that after a
power cut nobody reads a stale "wired" from an empty or old file; the routine refreshes
(probe times, every ``status_interval_s``) skip the fsync to spare the SD card.

The fast notification is the rename itself: a watcher holds an inotify watch on the run
directory and sees IN_MOVED_TO for uplink.json within a millisecond of the switch. No socket
protocol, no permissions to arrange between daemons running as different users, and a
watcher started before the uplink daemon simply sees the file appear.

Forwarder side, the whole API::

    watcher = UplinkWatcher(cfg.device.state_dir / "run")
    watcher.on_change(lambda change: client.disconnect() if change.switched else None)
    ...
    allowed = watcher.current.allowed if watcher.current else "all"

or, without a thread: ``change = watcher.poll(timeout)`` / ``selector.register(watcher)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from edge.durable import fsync_dir, temp_file_for
from edge.uplink.errors import NoStatus

__all__ = [
    "STATUS_NAME",
    "Announcer",
    "UplinkChange",
    "UplinkState",
    "UplinkWatcher",
    "boottime",
    "read_status",
]

log = logging.getLogger("edge.uplink.announce")

STATUS_NAME: Final = "uplink.json"

# inotify(7)
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE = 0x00000200
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_EVENT = struct.Struct("iIII")


def boottime() -> float:
    """Seconds since boot, counting suspend; comparable across processes and namespaces."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Announcer:
    """Writes uplink.json; ``durable=True`` for switches and policy changes."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / STATUS_NAME
        self.writes = 0
        self.durable_writes = 0

    def publish(self, status: dict[str, Any], *, durable: bool) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(status, indent=1, sort_keys=True) + "\n").encode()
        with temp_file_for(self.path) as (tmp, f):
            os.fchmod(f.fileno(), 0o644)  # the forwarder and panel read it as other users
            f.write(data)
            f.flush()
            if durable:
                # 1. the bytes reach the card before the name points at them
                os.fsync(f.fileno())
            f.close()
            # 2. readers switch from the old whole file to the new whole file (inotify fires)
            os.replace(tmp, self.path)
        if durable:
            # 3. the rename itself survives a power cut
            fsync_dir(self.run_dir)
            self.durable_writes += 1
        self.writes += 1


def read_status(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATUS_NAME
    try:
        doc: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise NoStatus(f"{path} does not exist: the uplink daemon is not running; start it "
                       "(systemctl start edge-uplink) or run `edge uplink --once`") from None
    except (OSError, ValueError) as e:
        raise NoStatus(f"{path} cannot be read ({e}): restart the uplink daemon") from None
    return doc


@dataclass(frozen=True)
class UplinkState:
    """What the forwarder needs from uplink.json."""

    active: str | None
    active_metered: bool
    metered_policy: str
    switch_seq: int
    daemon_started: float
    updated_boottime: float
    doc: dict[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> UplinkState:
        active = doc.get("active")
        links = doc.get("links") or {}
        metered = bool(active and links.get(active, {}).get("metered", False))
        return cls(active=active if isinstance(active, str) else None, active_metered=metered,
                   metered_policy=str(doc.get("metered_policy", "all")),
                   switch_seq=int(doc.get("switch_seq", 0)),
                   daemon_started=float(doc.get("daemon_started", 0.0)),
                   updated_boottime=float(doc.get("updated_boottime", 0.0)), doc=doc)

    @property
    def allowed(self) -> str:
        """What may be sent right now: ``metered_policy`` while on a metered link, else all."""
        return self.metered_policy if self.active_metered else "all"

    def age_s(self) -> float:
        """How old the daemon's last word is (a dead daemon's file grows old)."""
        return boottime() - self.updated_boottime


@dataclass(frozen=True)
class UplinkChange:
    previous: UplinkState | None
    current: UplinkState

    @property
    def switched(self) -> bool:
        """Traffic moved to another link (or the daemon took over routing): connections
        made before now may be stuck on the old link and should be dropped."""
        prev, cur = self.previous, self.current
        if prev is None:
            return cur.active is not None
        if prev.active != cur.active:
            return True
        # A -> B -> A between two reads: same link, but the connection went through B's
        # outage or was cut; a restarted daemon counts from 0 again and is not a switch.
        return prev.daemon_started == cur.daemon_started and prev.switch_seq != cur.switch_seq

    @property
    def policy_changed(self) -> bool:
        return self.previous is None or self.previous.allowed != self.current.allowed


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


class UplinkWatcher:
    """Follows uplink.json; reports switches and metered-policy changes (not refreshes)."""

    _MASK = _IN_MOVED_TO | _IN_CLOSE_WRITE | _IN_CREATE | _IN_DELETE

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STATUS_NAME
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lib = _libc()
        fd = int(self._lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_init1: {os.strerror(e)}")
        self._fd = fd
        self._wd = -1
        self._add_watch()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[UplinkChange], None]] = []
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self.current: UplinkState | None = self._read()

    def _add_watch(self) -> None:
        wd = int(self._lib.inotify_add_watch(self._fd, os.fsencode(self.run_dir), self._MASK))
        if wd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_add_watch {self.run_dir}: {os.strerror(e)}")
        self._wd = wd

    def _read(self) -> UplinkState | None:
        try:
            return UplinkState.from_doc(json.loads(self.path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as e:
            log.warning("cannot read %s: %s", self.path, e)
            return None

    def fileno(self) -> int:
        """The inotify descriptor: readable when uplink.json may have changed."""
        return self._fd

    def _drain(self) -> bool:
        """Read pending inotify events; True if any concerns uplink.json (or were lost)."""
        relevant = False
        while True:
            try:
                buf = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return relevant
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            offset = 0
            while offset + _EVENT.size <= len(buf):
                _wd, mask, _cookie, length = _EVENT.unpack_from(buf, offset)
                name = buf[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if mask & (_IN_Q_OVERFLOW | _IN_IGNORED):
                    relevant = True
                    if mask & _IN_IGNORED:  # run dir removed: watch it again when it is back
                        with contextlib.suppress(OSError):
                            self.run_dir.mkdir(parents=True, exist_ok=True)
                            self._add_watch()
                elif name == STATUS_NAME.encode():
                    relevant = True

    def poll(self, timeout: float = 0.0) -> UplinkChange | None:
        """Wait up to ``timeout`` seconds for a switch or a policy change."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready and self._drain():
                with self._lock:
                    prev, cur = self.current, self._read()
                    if cur is not None:
                        self.current = cur
                if cur is not None and (prev is None or _differs(prev, cur)):
                    return UplinkChange(prev, cur)
            if not ready or time.monotonic() >= deadline:
                return None

    def on_change(self, callback: Callable[[UplinkChange], None]) -> None:
        """Call ``callback(change)`` from a background thread on every switch or policy
        change. Keep it short: e.g. paho's ``client.disconnect()`` or ``sock.shutdown()``."""
        self._callbacks.append(callback)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="uplink-watcher",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                change = self.poll(0.25)
            except OSError:
                if self._closed.is_set():
                    return
                raise
            if change is None:
                continue
            for cb in list(self._callbacks):
                try:
                    cb(change)
                except Exception:  # a caller's bug must not stop the notifications
                    log.exception("uplink change callback failed")

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def __enter__(self) -> UplinkWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _differs(prev: UplinkState, cur: UplinkState) -> bool:
    change = UplinkChange(prev, cur)
    return change.switched or change.policy_changed or prev.active != cur.active
