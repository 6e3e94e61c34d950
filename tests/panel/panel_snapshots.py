"""Snapshots of an office for panel tests: a healthy one, and heartbeats to vary it."""

from __future__ import annotations

import math
from typing import Any

from edge.health.heartbeat import HeartbeatInfo
from edge.panel.state import PanelInputs

FRESH = HeartbeatInfo(age_s=2.0, status="ok", detail={}, stale=False)
ALL_FRESH = {"intake": FRESH, "forward": FRESH, "uplink": FRESH, "panel": FRESH}
STALE = HeartbeatInfo(age_s=95.0, status="ok", detail={}, stale=True)
ERROR = HeartbeatInfo(age_s=1.0, status="error", detail={"error": "spool.full"}, stale=False)
OTHER_BOOT = HeartbeatInfo(age_s=math.inf, status="ok", detail={}, stale=True)


def inputs(**over: Any) -> PanelInputs:
    """A healthy office on wired Ethernet, long after boot; override what a test is about."""
    base: dict[str, Any] = dict(
        provisioned=True, uptime_s=3600.0, uplink_active="wired", uplink_known=True,
        backlog_count=3, backlog_oldest_age_s=20.0, spool_free_fraction=0.8,
        spool_refusing=False, heartbeats=ALL_FRESH, locate_until=None, spool_known=True,
    )
    base.update(over)
    return PanelInputs(**base)


def hb(**over: HeartbeatInfo | None) -> dict[str, HeartbeatInfo]:
    """The healthy heartbeats with some replaced (None: that program never beat)."""
    beats = dict(ALL_FRESH)
    for program, info in over.items():
        if info is None:
            beats.pop(program)
        else:
            beats[program] = info
    return beats
