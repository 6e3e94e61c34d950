"""Reads the live snapshot the panel shows: heartbeats, uplink state, spool summary, locate.

Place in the data flow: the only part of the panel that looks at the rest of the appliance.
Every source is read fresh each step (a few small files on tmpfs under ``state_dir/run`` and
one spool summary), turned into a ``PanelInputs`` for ``state.derive()``. A source that
cannot be read becomes "unknown" in the snapshot; it never stops the panel, because a panel
that crashes shows nothing at all.

Sources:
- heartbeats: ``run/heartbeat/<program>`` (``edge.health.heartbeat``);
- uplink: ``run/uplink.json``, ``{"active": "wired"|"4g"|null, "links": {...},
  "updated_boottime": float}``, written by ``edge uplink``; missing or malformed = unknown;
- spool: anything with ``summary()`` (``SpoolSummarySource``), e.g. ``edge.spool.Spool``,
  or ``HeartbeatSpoolSource``, which reads the summary the spool's owner publishes in its
  heartbeat so the panel needs no access to the spool's files at all;
- locate: ``run/locate``, an expiry on CLOCK_BOOTTIME (first line) and the boot id (second
  line), written by ``edge panel --locate SECONDS``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from edge.config import Config
from edge.health.heartbeat import (
    INTAKE,
    boot_id,
    boottime,
    read_heartbeats,
)
from edge.panel.errors import SpoolSummaryUnavailable
from edge.panel.state import PanelInputs, UplinkKind

__all__ = [
    "HeartbeatSpoolSource",
    "LiveSources",
    "SpoolSummary",
    "SpoolSummaryData",
    "SpoolSummarySource",
    "UplinkStatus",
    "free_fraction",
    "is_provisioned",
    "read_locate",
    "read_uplink",
    "spool_summary_detail",
    "write_locate",
]

log = logging.getLogger(__name__)

UPLINK_FILE = "uplink.json"
LOCATE_FILE = "locate"
HEARTBEAT_SUBDIR = "heartbeat"


class SpoolSummary(Protocol):
    """What the panel needs to know about the spool (``edge.spool.Spool.summary()``)."""

    @property
    def waiting_count(self) -> int: ...
    @property
    def oldest_waiting_age_s(self) -> float | None: ...
    @property
    def free_bytes(self) -> int: ...
    @property
    def quota_bytes(self) -> int: ...
    @property
    def used_bytes(self) -> int: ...
    @property
    def refusing(self) -> bool: ...


class SpoolSummarySource(Protocol):
    def summary(self) -> SpoolSummary: ...


@dataclass(frozen=True)
class SpoolSummaryData:
    """A plain ``SpoolSummary``."""

    waiting_count: int
    oldest_waiting_age_s: float | None
    free_bytes: int
    quota_bytes: int
    used_bytes: int
    refusing: bool


def free_fraction(s: SpoolSummary) -> float:
    """Room for new recordings as a fraction of the quota: whichever runs out first, the
    quota or the disk, sets the limit."""
    if s.quota_bytes <= 0:
        return 0.0
    room = min(s.quota_bytes - s.used_bytes, s.free_bytes)
    return min(1.0, max(0.0, room / s.quota_bytes))


def spool_summary_detail(s: SpoolSummary) -> dict[str, Any]:
    """The summary as heartbeat detail, for the program that owns the spool to publish:
    ``heartbeat.beat(detail={"spool": spool_summary_detail(spool.summary())})``."""
    return {
        "waiting_count": int(s.waiting_count),
        "oldest_waiting_age_s": (None if s.oldest_waiting_age_s is None
                                 else float(s.oldest_waiting_age_s)),
        "free_bytes": int(s.free_bytes),
        "quota_bytes": int(s.quota_bytes),
        "used_bytes": int(s.used_bytes),
        "refusing": bool(s.refusing),
    }


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class HeartbeatSpoolSource:
    """Reads the spool summary that ``program`` (the spool's owner) puts in its heartbeat.

    The panel then never opens the spool's SQLite file or its directory of biometric
    recordings: it can run without read access to them, and adds no reader to the SD card.
    A summary is only as fresh as the heartbeat; a stale one is refused, not shown.
    """

    def __init__(self, heartbeat_dir: Path, program: str = INTAKE,
                 stale_after: Mapping[str, float] | None = None,
                 *, clock: Callable[[], float] = boottime, boot: str | None = None) -> None:
        self.heartbeat_dir = heartbeat_dir
        self.program = program
        self._stale_after = stale_after
        self._clock = clock
        self._boot = boot

    def summary(self) -> SpoolSummaryData:
        beats = read_heartbeats(self.heartbeat_dir, self._stale_after, now=self._clock(),
                                boot=self._boot if self._boot is not None else boot_id())
        info = beats.get(self.program)
        if info is None:
            raise SpoolSummaryUnavailable(f"{self.program} has not published a heartbeat yet")
        if info.stale:
            raise SpoolSummaryUnavailable(
                f"{self.program}'s heartbeat is stale: its spool summary is out of date")
        d = info.detail.get("spool")
        if not isinstance(d, dict):
            raise SpoolSummaryUnavailable(
                f"{self.program}'s heartbeat has no spool summary (detail['spool'])")
        oldest = d.get("oldest_waiting_age_s")
        ints = ("waiting_count", "free_bytes", "quota_bytes", "used_bytes")
        if (not all(_is_int(d.get(k)) for k in ints) or not isinstance(d.get("refusing"), bool)
                or not (oldest is None or _is_num(oldest))):
            raise SpoolSummaryUnavailable(f"{self.program}'s spool summary is malformed: {d!r}")
        return SpoolSummaryData(
            waiting_count=d["waiting_count"],
            # the oldest recording has aged since the beat was written
            oldest_waiting_age_s=None if oldest is None else float(oldest) + info.age_s,
            free_bytes=d["free_bytes"],
            quota_bytes=d["quota_bytes"],
            used_bytes=d["used_bytes"],
            refusing=d["refusing"],
        )


@dataclass(frozen=True)
class UplinkStatus:
    known: bool
    active: UplinkKind | None = None


_UNKNOWN_UPLINK = UplinkStatus(known=False)


def read_uplink(path: Path, now: float) -> UplinkStatus:
    """``uplink.json`` → which link carries traffic (None = offline); missing = unknown.

    A file stamped later than ``now`` is from an earlier boot (CLOCK_BOOTTIME restarted), so
    it says nothing about this one.
    """
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return _UNKNOWN_UPLINK
    except (OSError, ValueError) as e:
        log.debug("uplink status %s unreadable: %s", path, e)
        return _UNKNOWN_UPLINK
    if not isinstance(doc, dict):
        return _UNKNOWN_UPLINK
    active = doc.get("active")
    updated = doc.get("updated_boottime")
    if not _is_num(updated) or updated > now + 1.0:
        return _UNKNOWN_UPLINK
    if active == "wired":
        return UplinkStatus(known=True, active="wired")
    if active == "4g":
        return UplinkStatus(known=True, active="4g")
    if active is None:
        return UplinkStatus(known=True, active=None)
    return _UNKNOWN_UPLINK


def read_locate(path: Path, boot: str) -> float | None:
    """The locate request's expiry (CLOCK_BOOTTIME), or None."""
    try:
        lines = path.read_text(encoding="ascii").split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return None
    if not lines:
        return None
    try:
        until = float(lines[0])
    except ValueError:
        return None
    if not math.isfinite(until):
        return None
    if len(lines) > 1 and lines[1] != boot:
        return None  # asked for before the last reboot
    return until


def write_locate(run_dir: Path, seconds: float, *, now: float | None = None,
                 boot: str | None = None) -> float | None:
    """Ask the running panel to show "locate" for ``seconds``; 0 cancels. Returns the expiry.

    Runtime state on tmpfs: atomic rename, no fsync (a reboot ends the request anyway).
    """
    path = run_dir / LOCATE_FILE
    if seconds <= 0:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    until = (now if now is not None else boottime()) + seconds
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{LOCATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(f"{until!r}\n{boot if boot is not None else boot_id()}\n", encoding="ascii")
    os.replace(tmp, path)
    return until


def is_provisioned(cfg: Config) -> bool:
    """A technician has enrolled this box: identity key, certificate, fleet CA and the
    central site's sealing key are all in place."""
    paths = [cfg.identity.key, cfg.identity.cert, cfg.identity.ca, cfg.seal.central_public_key]
    return all(p is not None and p.is_file() for p in paths)


class LiveSources:
    """Reads one ``PanelInputs`` snapshot from the running appliance."""

    def __init__(
        self,
        run_dir: Path,
        *,
        spool: SpoolSummarySource | None,
        provisioned: Callable[[], bool],
        stale_after: Mapping[str, float] | None = None,
        clock: Callable[[], float] = boottime,
        boot: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.heartbeat_dir = run_dir / HEARTBEAT_SUBDIR
        self.spool = spool
        self._provisioned = provisioned
        self._stale_after = stale_after
        self._clock = clock
        self._boot = boot
        self._last_spool_error: str | None = None

    def _spool_summary(self) -> SpoolSummary | None:
        if self.spool is None:
            return None
        try:
            s = self.spool.summary()
        except Exception as e:  # any failure means "unknown"; the panel must keep running
            msg = f"{type(e).__name__}: {e}"
            if msg != self._last_spool_error:
                log.warning("spool summary unavailable: %s", msg)
            self._last_spool_error = msg
            return None
        if self._last_spool_error is not None:
            log.info("spool summary available again")
        self._last_spool_error = None
        return s

    def read(self) -> PanelInputs:
        now = self._clock()
        boot = self._boot if self._boot is not None else boot_id()
        beats = read_heartbeats(self.heartbeat_dir, self._stale_after, now=now, boot=boot)
        uplink = read_uplink(self.run_dir / UPLINK_FILE, now)
        s = self._spool_summary()
        return PanelInputs(
            provisioned=self._provisioned(),
            uptime_s=now,
            uplink_active=uplink.active,
            uplink_known=uplink.known,
            backlog_count=s.waiting_count if s is not None else 0,
            backlog_oldest_age_s=s.oldest_waiting_age_s if s is not None else None,
            spool_free_fraction=free_fraction(s) if s is not None else 0.0,
            spool_refusing=s.refusing if s is not None else False,
            heartbeats=beats,
            locate_until=read_locate(self.run_dir / LOCATE_FILE, boot),
            spool_known=s is not None,
        )
