"""Time on a Pi without a real-time clock.

Until NTP syncs, the wall clock may read 1970 or last shutdown's time, so the spool orders
by sequence number and measures ages with CLOCK_BOOTTIME when the boot is the same, falling
back to the wall clock only when both readings look sane.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

from edge.bootid import read_boot_id

__all__ = ["Stamp", "age_seconds", "boot_id", "now_stamp"]

# Before this the wall clock cannot be right (the software did not exist yet).
SANE_WALL = 1_767_225_600.0  # 2026-01-01


@cache
def boot_id() -> str:
    return read_boot_id() or "unknown"


@dataclass(frozen=True)
class Stamp:
    wall: float
    boot_id: str
    boottime: float


def now_stamp() -> Stamp:
    return Stamp(time.time(), boot_id(), time.clock_gettime(time.CLOCK_BOOTTIME))


def age_seconds(wall: float, stamp_boot_id: str, boottime: float,
                now: Stamp | None = None) -> float | None:
    now = now or now_stamp()
    if stamp_boot_id == now.boot_id:
        return max(0.0, now.boottime - boottime)
    if wall >= SANE_WALL and now.wall >= SANE_WALL:
        return max(0.0, now.wall - wall)
    return None
