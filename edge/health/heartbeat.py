"""Program heartbeats: each program (intake, forwarder, uplink, panel) says "still alive".

Place in the data flow: beside it, not in it. Every long-running program calls
``Heartbeat.beat()`` from its main loop; the panel (and telemetry) call ``read_heartbeats()``
and turn an old heartbeat into "a program is down or stuck" on the SYS light. A program whose
loop hangs stops beating, so "stuck" is caught as well as "crashed".

Clock. The Pi has no real-time clock: the wall clock starts at a stale value and jumps when
NTP syncs, which would make a heartbeat look hours old (or from the future). So a heartbeat
stores ``CLOCK_BOOTTIME`` (seconds since boot, counting suspend, never set by NTP) plus the
kernel's boot id. Ages are only compared within one boot; a heartbeat from another boot is
stale whatever its numbers say.

Cheap writes. Programs beat every few seconds, for years, on an SD card. So:
- no fsync: a heartbeat lost in a power cut is harmless (after the reboot every program
  beats again, and an old one would be from another boot anyway);
- write a small temp file and rename it over the old one, so a reader never sees half a file
  (rename is atomic; without fsync it is merely not durable, which is fine here);
- write at most once per ``min_interval_s`` (5 s) while the status stays the same, even if
  the detail changes (counters do, all the time), so a busy loop may call ``beat()`` as
  often as it likes; a new status is written at once;
- keep the files on tmpfs: on the device, ``/var/lib/edge/run`` is made a symlink to
  ``/run/edge`` when ``/run`` is a tmpfs (as on Raspberry Pi OS), so beats cost RAM, not
  flash wear. Everything under ``run/`` is runtime state that must not outlive a boot anyway.
  Where ``/run`` is not a tmpfs (a container), or for another state dir (a demo, a test),
  ``run/`` is an ordinary directory. There each beat still reaches the disk soon: ext4
  starts writeback of a file renamed over another (``auto_da_alloc``), which is why the
  tmpfs and the rate limit matter (bench/heartbeat_write.py: a beat on tmpfs costs ~1/15
  of one on ext4 and ~1/150 of a durable fsync'd write).

File format (one JSON object, UTF-8): ``{"v": 1, "program": "intake", "pid": 812,
"boot_id": "...", "boottime": 1234.5, "status": "ok", "detail": {...}}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from edge.bootid import BOOT_ID_PATH, read_boot_id

__all__ = [
    "DEFAULT_STALE_AFTER_S",
    "FALLBACK_STALE_AFTER_S",
    "FORWARDER",
    "INTAKE",
    "PANEL",
    "PROGRAM_RE",
    "STATUS_ERROR",
    "STATUS_OK",
    "STATUS_STARTING",
    "STATUS_STOPPED",
    "UPLINK",
    "Heartbeat",
    "HeartbeatInfo",
    "boot_id",
    "boottime",
    "heartbeat_dir",
    "read_heartbeats",
    "runtime_dir",
]

log = logging.getLogger(__name__)

# Program names as they appear under run/heartbeat/. Each program beats under its own name.
INTAKE = "intake"
FORWARDER = "forward"
UPLINK = "uplink"
PANEL = "panel"

# Statuses a program may report. Anything else is treated like "ok" by readers (alive, no
# known fault), so a program can add its own words without breaking the panel.
STATUS_OK = "ok"
STATUS_STARTING = "starting"   # alive, not ready yet (e.g. waiting for the broker)
STATUS_ERROR = "error"         # alive but failing; put the error key in detail["error"]
STATUS_STOPPED = "stopped"     # shut down on purpose; still "not running" for the panel

# Seconds without a beat after which a program counts as down or stuck. Programs beat every
# ~5 s; the forwarder may block longer inside a network call, so it gets more slack.
DEFAULT_STALE_AFTER_S: Mapping[str, float] = {
    INTAKE: 30.0,
    FORWARDER: 60.0,
    UPLINK: 30.0,
    PANEL: 20.0,
}
FALLBACK_STALE_AFTER_S = 60.0

PROGRAM_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
DEFAULT_TMPFS_DIR = Path("/run/edge")
DEVICE_STATE_DIR = Path("/var/lib/edge")
_MAX_FILE_BYTES = 64 * 1024


def boottime() -> float:
    """Seconds since boot on a clock NTP never moves (CLOCK_BOOTTIME counts suspend too)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@lru_cache(maxsize=4)
def boot_id(path: Path = BOOT_ID_PATH) -> str:
    """The kernel's random id for this boot (edge.bootid: also under ProcSubset=pid); it
    cannot change while a process lives."""
    return read_boot_id(path)


def _check_program(program: str) -> str:
    if not PROGRAM_RE.match(program):
        raise ValueError(
            f"heartbeat program name {program!r}: use 1-32 lowercase letters, digits and '-', "
            "starting with a letter"
        )
    return program


def _decode_mount_path(raw: str) -> str:
    # /proc/self/mounts escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw)


def _fs_type(path: Path, mounts: Path = Path("/proc/self/mounts")) -> str | None:
    """The file system type of the mount that holds ``path`` (longest mount point wins)."""
    try:
        text = mounts.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = _decode_mount_path(parts[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, parts[2]
    return best_type


def runtime_dir(state_dir: Path, *, tmpfs_dir: Path | None = None) -> Path:
    """``state_dir/run``: runtime status files (heartbeats, uplink.json, locate).

    When ``run`` does not exist yet and ``tmpfs_dir``'s parent is a tmpfs, ``run`` becomes a
    symlink to ``tmpfs_dir`` (see the module comment for why). ``tmpfs_dir`` defaults to
    ``/run/edge`` for the device's own state dir (``/var/lib/edge``) and to nothing for any
    other (a demo or a test must not share, or litter, the device's ``/run/edge``). An
    existing ``run`` is kept as it is; a symlink whose tmpfs target vanished with the last
    reboot gets its target back. Safe to call from several programs starting at once.
    """
    run = Path(state_dir) / "run"
    if tmpfs_dir is None and os.path.abspath(state_dir) == str(DEVICE_STATE_DIR):
        tmpfs_dir = DEFAULT_TMPFS_DIR
    if run.is_symlink():
        target = Path(os.readlink(run))
        if not target.is_absolute():
            target = run.parent / target
        # tmpfs is empty after a reboot: recreate the target the link points at.
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        return run
    if run.is_dir():
        return run
    run.parent.mkdir(parents=True, exist_ok=True)
    if (tmpfs_dir is not None and tmpfs_dir.parent.is_dir()
            and _fs_type(tmpfs_dir.parent) == "tmpfs"):
        try:
            tmpfs_dir.mkdir(mode=0o755, exist_ok=True)
        except PermissionError:
            log.info("cannot create %s; keeping runtime files in %s", tmpfs_dir, run)
        else:
            # Another program may win this race; its link points at the same place.
            with contextlib.suppress(FileExistsError):
                run.symlink_to(tmpfs_dir, target_is_directory=True)
            return run
    run.mkdir(mode=0o755, exist_ok=True)
    return run


def heartbeat_dir(state_dir: Path, *, tmpfs_dir: Path | None = None) -> Path:
    """``state_dir/run/heartbeat`` (created by the first ``beat()``)."""
    return runtime_dir(state_dir, tmpfs_dir=tmpfs_dir) / "heartbeat"


class Heartbeat:
    """One program's heartbeat file. Call ``beat()`` from the program's main loop.

    ``beat()`` writes at once when the status changed (an error must show without delay)
    and otherwise at most once per ``min_interval_s``, carrying the latest detail. A failed
    write is logged, not raised: a full or read-only disk must not take the program down with
    it (the panel will then show the program as stale, which is the truth as far as anyone
    can see).
    """

    def __init__(
        self,
        directory: Path,
        program: str,
        *,
        min_interval_s: float = 5.0,
        clock: Callable[[], float] = boottime,
        boot: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.program = _check_program(program)
        self.path = self.directory / program
        self._pid = os.getpid()
        self._tmp = self.directory / f".{program}.{self._pid}.tmp"
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._boot = boot
        self._last_at: float | None = None
        self._last_status: str | None = None
        self._prepared = False
        self._failing = False

    def _prepare(self) -> None:
        self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        # A crash between write and rename leaves a temp file named after a dead pid.
        for leftover in self.directory.glob(f".{self.program}.*.tmp"):
            if leftover != self._tmp:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        self._prepared = True

    def beat(self, status: str = STATUS_OK, detail: Mapping[str, Any] | None = None) -> bool:
        """Record "alive, with this status"; True when the file was written."""
        now = self._clock()
        detail_json = json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"))
        if (
            status == self._last_status
            and self._last_at is not None
            and 0 <= now - self._last_at < self._min_interval_s
        ):
            return False
        boot = self._boot if self._boot is not None else boot_id()
        doc = {"v": 1, "program": self.program, "pid": self._pid, "boot_id": boot,
               "boottime": float(now), "status": status, "detail": json.loads(detail_json)}
        payload = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        try:
            self._write(payload)
        except OSError as e:
            if not self._failing:
                log.warning("heartbeat %s: cannot write %s: %s", self.program, self.path, e)
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat %s: writing again", self.program)
        self._failing = False
        self._last_at, self._last_status = now, status
        return True

    def _write(self, payload: bytes) -> None:
        if not self._prepared:
            self._prepare()
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            # The directory went away (tmpfs cleared under us): make it again, once.
            self._prepare()
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            # 1. the whole body in one write; no fsync (see module comment)
            os.write(fd, payload)
        finally:
            os.close(fd)
        # 2. readers see the old beat or the new one, never a mix
        os.replace(self._tmp, self.path)


@dataclass(frozen=True)
class HeartbeatInfo:
    """What a reader knows about one program's last beat.

    ``age_s`` is ``math.inf`` when the beat is from another boot or unreadable.
    """

    age_s: float
    status: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    stale: bool = False


_UNREADABLE = "unreadable"


def _parse(raw: bytes, program: str, now: float, boot: str, stale_after_s: float
           ) -> HeartbeatInfo:
    try:
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        at = doc["boottime"]
        status = doc["status"]
        detail = doc.get("detail", {})
        their_boot = doc["boot_id"]
        if (not isinstance(at, (int, float)) or isinstance(at, bool) or not math.isfinite(at)
                or not isinstance(status, str) or not isinstance(detail, dict)
                or not isinstance(their_boot, str)):
            raise ValueError("bad field types")
    except (ValueError, KeyError, UnicodeDecodeError) as e:
        log.debug("heartbeat %s unreadable: %s", program, e)
        return HeartbeatInfo(age_s=math.inf, status=_UNREADABLE, detail={}, stale=True)
    if their_boot != boot:
        return HeartbeatInfo(age_s=math.inf, status=status, detail=detail, stale=True)
    # A beat "from the future" within one boot cannot happen; clamp rather than go negative.
    age = max(0.0, now - float(at))
    return HeartbeatInfo(age_s=age, status=status, detail=detail, stale=age > stale_after_s)


def read_heartbeats(
    directory: Path,
    stale_after: Mapping[str, float] | None = None,
    *,
    now: float | None = None,
    boot: str | None = None,
) -> dict[str, HeartbeatInfo]:
    """Every program's last beat in ``directory``, keyed by program name.

    ``stale_after`` overrides ``DEFAULT_STALE_AFTER_S`` per program; programs in neither
    get ``FALLBACK_STALE_AFTER_S``. A program that never beat is simply absent: whether
    that is a fault depends on which programs the reader expects.
    """
    limits = {**DEFAULT_STALE_AFTER_S, **(stale_after or {})}
    current = now if now is not None else boottime()
    this_boot = boot if boot is not None else boot_id()
    out: dict[str, HeartbeatInfo] = {}
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return out
    for entry in entries:
        name = entry.name
        if not PROGRAM_RE.match(name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            with open(entry.path, "rb") as f:
                raw = f.read(_MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            continue  # removed between scandir and open
        except OSError as e:
            log.debug("heartbeat %s unreadable: %s", name, e)
            raw = b""
        if len(raw) > _MAX_FILE_BYTES:
            raw = b""
        limit = limits.get(name, FALLBACK_STALE_AFTER_S)
        out[name] = _parse(raw, name, current, this_boot, limit)
    return out
