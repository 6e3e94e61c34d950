"""Derived status per office: what central ops act on, computed from a record and the time.

Theory of operation
-------------------
Two kinds of message reach the fleet view: the retained *status* (``online`` on connect,
``offline`` from the Last Will or a clean stop) and periodic *telemetry*. Neither alone says
whether an office is fine:

* ``offline`` — the broker saw the device go (Last Will, reason ``lost``) or it said
  goodbye (``shutdown``), and no telemetry arrived after that.
* ``stale``   — connected as far as the broker knows (or unknown), but no telemetry for
  ``stale_intervals`` × ``interval_s``: the forwarder hangs, or the link is half-dead
  (the TCP session has not timed out yet). Measured on the central clock only, because
  appliance clocks drift.
* ``online``  — telemetry within that window. Telemetry newer than an ``offline`` status
  wins: the device is evidently talking (the status message may have been reordered
  around a reconnect).
* ``unknown`` — we only ever saw messages we had to refuse.

On top of the state come *conditions*, each a word on the dashboard and in the API:
on 4G, backlog late (age of the oldest unreceipted recording, which keeps growing while
the office is silent: reported age + time since the report), disk low, 4G budget nearly
used or exceeded, programs stale, power problems, active error keys. ``severity`` orders
the table: 2 = the queue of residents is at risk (offline, stale, disk low, backlog
critical, 4G budget exceeded, a program dead), 1 = watch (on 4G, backlog late,
budget ≥ warn fraction, under-voltage, errors), 0 = fine.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.central.fleet.model import DeviceRecord
from edge.telemetry.schema import Telemetry

__all__ = [
    "OFFLINE",
    "ONLINE",
    "STALE",
    "STATES",
    "UNKNOWN",
    "OfficeStatus",
    "Thresholds",
    "derive",
    "human_age",
]

ONLINE = "online"
OFFLINE = "offline"
STALE = "stale"
UNKNOWN = "unknown"
STATES = (ONLINE, STALE, OFFLINE, UNKNOWN)


@dataclass(frozen=True)
class Thresholds:
    interval_s: float = 60.0             # the appliances' telemetry interval
    stale_intervals: int = 3             # missed reports before an office counts as stale
    backlog_warn_s: int = 3600           # oldest unreceipted recording older than 1 h
    backlog_crit_s: int = 4 * 3600       # ...older than 4 h: ask the office to call
    disk_low_bytes: int = 2 * 1024**3    # below this free space intake will soon refuse
    disk_low_fraction: float = 0.05
    mobile_warn_fraction: float = 0.8    # of the 4G budget for the billing period

    @property
    def stale_after_s(self) -> float:
        return self.interval_s * self.stale_intervals


@dataclass(frozen=True)
class OfficeStatus:
    device_id: str
    state: str
    since: float | None              # when the current state began (central clock)
    last_seen: float | None          # last message of any kind that we accepted
    severity: int
    conditions: tuple[str, ...]      # words for the dashboard, most urgent first
    uplink: str | None
    on_4g: bool
    backlog_items: int | None
    backlog_bytes: int | None
    backlog_age_s: int | None        # as of now (grows while silent)
    backlog_late: bool
    disk_free_bytes: int | None
    disk_low: bool
    mobile_fraction: float | None    # used / budget
    mobile_warn: bool
    mobile_over: bool
    stale_programs: tuple[str, ...]
    telemetry: Telemetry | None
    record: DeviceRecord


def human_age(seconds: float | None) -> str:
    """``95`` → ``1 min``; ``20000`` → ``5 h 33 min``; compact words for table cells."""
    if seconds is None:
        return "–"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _state(rec: DeviceRecord, now: float, th: Thresholds) -> tuple[str, float | None]:
    tel_at = rec.telemetry_at
    if rec.status == OFFLINE and (tel_at is None or (rec.status_at or 0) >= tel_at):
        return OFFLINE, rec.status_at
    if tel_at is not None and now - tel_at <= th.stale_after_s:
        # Online since the later of: connect, or the end of the silence we just left.
        since = rec.status_at if rec.status == ONLINE else tel_at
        return ONLINE, since
    if rec.status == ONLINE and rec.status_at is not None and (
        tel_at is None or tel_at < rec.status_at
    ):
        # Just (re)connected: give it one stale window to send its first telemetry.
        if now - rec.status_at <= th.stale_after_s:
            return ONLINE, rec.status_at
        return STALE, rec.status_at + th.stale_after_s
    if tel_at is not None:
        return STALE, tel_at + th.stale_after_s
    return UNKNOWN, rec.first_seen


def derive(rec: DeviceRecord, now: float, th: Thresholds) -> OfficeStatus:
    state, since = _state(rec, now, th)
    t = rec.telemetry
    seen = [x for x in (rec.status_at, rec.telemetry_at) if x is not None]
    crit: list[str] = []
    warn: list[str] = []
    if state == OFFLINE:
        crit.append("offline (power or link lost)" if rec.status_reason == "lost"
                    else "offline (shut down)" if rec.status_reason == "shutdown" else "offline")
    elif state == STALE:
        crit.append("no telemetry")
    elif state == UNKNOWN:
        warn.append("only bad messages")

    uplink = t.uplink if t else None
    on_4g = uplink == "4g" and state in (ONLINE, STALE)
    backlog_age: int | None = None
    backlog_late = False
    disk_low = False
    mobile_fraction: float | None = None
    mobile_warn = mobile_over = False
    stale_programs: tuple[str, ...] = ()
    if t is not None:
        if uplink == "none" and state == ONLINE:
            crit.append("no uplink")
        if on_4g:
            warn.append("on 4G")
        if t.backlog_oldest_age_s is not None and t.backlog_items > 0:
            backlog_age = t.backlog_oldest_age_s + int(now - (rec.telemetry_at or now))
            if backlog_age >= th.backlog_crit_s:
                crit.append(f"backlog {human_age(backlog_age)} old")
                backlog_late = True
            elif backlog_age >= th.backlog_warn_s:
                warn.append(f"backlog {human_age(backlog_age)} old")
                backlog_late = True
        if t.disk_free_bytes is not None:
            limit = th.disk_low_bytes
            if t.disk_total_bytes:
                limit = max(limit, int(t.disk_total_bytes * th.disk_low_fraction))
            if t.disk_free_bytes < limit:
                disk_low = True
                crit.append("disk low")
        if t.mobile_used_bytes is not None and t.mobile_budget_bytes:
            mobile_fraction = t.mobile_used_bytes / t.mobile_budget_bytes
            if mobile_fraction >= 1.0:
                mobile_over = mobile_warn = True
                crit.append(f"4G budget used {mobile_fraction:.0%}")
            elif mobile_fraction >= th.mobile_warn_fraction:
                mobile_warn = True
                warn.append(f"4G budget used {mobile_fraction:.0%}")
        stale_programs = tuple(t.stale_programs)
        if stale_programs and state == ONLINE:
            crit.append("stale: " + ", ".join(stale_programs))
        flags = t.throttle_flags
        if flags is not None:
            warn.extend(flags.words())
        if t.errors:
            warn.append("errors: " + ", ".join(t.errors))
    if rec.last_reject_at is not None and (
        rec.telemetry_at is None or rec.last_reject_at > rec.telemetry_at
    ):
        warn.append("last message refused")

    severity = 2 if crit else 1 if warn else 0
    return OfficeStatus(
        device_id=rec.device_id, state=state, since=since,
        last_seen=max(seen) if seen else None, severity=severity,
        conditions=tuple(crit + warn), uplink=uplink, on_4g=on_4g,
        backlog_items=t.backlog_items if t else None,
        backlog_bytes=t.backlog_bytes if t else None,
        backlog_age_s=backlog_age, backlog_late=backlog_late,
        disk_free_bytes=t.disk_free_bytes if t else None, disk_low=disk_low,
        mobile_fraction=mobile_fraction, mobile_warn=mobile_warn, mobile_over=mobile_over,
        stale_programs=stale_programs, telemetry=t, record=rec,
    )
