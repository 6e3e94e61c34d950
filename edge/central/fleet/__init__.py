"""The central fleet view: which offices are offline, on 4G or falling behind.

Data flow: MQTT (``edge/+/up/status``, ``edge/+/up/telemetry``) → ``subscriber`` (paho
adapter) → ``ingest`` (topic → device id, strict decode) → ``service`` (in-memory latest
state, batched writes) → ``store`` (SQLite or PostgreSQL, downsampled history) and
``derive`` (online / offline / stale + conditions) → ``web`` (dashboard, JSON API,
Prometheus ``/metrics``). Alert rules: ``alerts.yml`` beside this file.
"""

from edge.central.fleet.derive import OfficeStatus, Thresholds, derive
from edge.central.fleet.model import DeviceRecord, Retention
from edge.central.fleet.service import FleetService
from edge.central.fleet.store import FleetStore, open_store

__all__ = [
    "DeviceRecord",
    "FleetService",
    "FleetStore",
    "OfficeStatus",
    "Retention",
    "Thresholds",
    "derive",
    "open_store",
]
