"""Liveness of the appliance's programs: each one touches a heartbeat, others read its age;
systemd readiness/watchdog notifications (sdnotify.py); the supervisor event listener that
restarts a program whose heartbeat has gone stale (supervisor_listener.py).

The panel turns stale heartbeats into a blinking SYS light; telemetry can report them to
central ops.
"""

from edge.health.heartbeat import (
    DEFAULT_STALE_AFTER_S,
    FALLBACK_STALE_AFTER_S,
    FORWARDER,
    INTAKE,
    PANEL,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_STARTING,
    STATUS_STOPPED,
    UPLINK,
    Heartbeat,
    HeartbeatInfo,
    boot_id,
    boottime,
    heartbeat_dir,
    read_heartbeats,
    runtime_dir,
)

__all__ = [
    "DEFAULT_STALE_AFTER_S",
    "FALLBACK_STALE_AFTER_S",
    "FORWARDER",
    "INTAKE",
    "PANEL",
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
