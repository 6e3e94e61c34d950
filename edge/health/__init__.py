"""Liveness of the appliance's programs: systemd readiness/watchdog notifications, heartbeat
files under /run/edge/heartbeat and the supervisor event listener that restarts a program
whose heartbeat has gone stale."""

__all__: list[str] = []
