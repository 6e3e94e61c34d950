"""Prometheus exposition of the fleet (text format 0.0.4), written out by hand.

Place in the data flow: ``GET /metrics`` → ``render_metrics(service)``. Conventions:
``device_id`` is the only per-device label (7,000 offices × ~20 series is ~140k series;
office names, regions and versions live once per device in ``fleet_device_info``, to be
joined with ``* on(device_id) group_left(office, region) fleet_device_info``); units are in
the names (``_seconds``, ``_bytes``, ``_celsius``, ``_timestamp_seconds``); counters end in
``_total``; booleans are 0/1 gauges. Values are raw facts (timestamps, ages as reported);
the alert rules in ``alerts.yml`` decide what is bad. Absent source on a device → no sample.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable

from edge.central.fleet.derive import STATES, OfficeStatus
from edge.central.fleet.service import FleetService

__all__ = ["CONTENT_TYPE", "METRIC_NAMES", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABEL_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")

Getter = Callable[[OfficeStatus], float | int | bool | None]


# (name, type, help, getter) for the per-device series.
DEVICE_SERIES: tuple[tuple[str, str, str, Getter], ...] = (
    ("fleet_device_connected", "gauge",
     "1 if the last status message is online (0: offline/Last Will).",
     lambda s: None if s.record.status is None else s.record.status == "online"),
    ("fleet_device_up", "gauge",
     "1 if the office is online with fresh telemetry (derived: not offline, not stale).",
     lambda s: s.state == "online"),
    ("fleet_device_status_change_timestamp_seconds", "gauge",
     "When the last status message (online/offline) arrived, central clock.",
     lambda s: s.record.status_at),
    ("fleet_device_last_telemetry_timestamp_seconds", "gauge",
     "When the last accepted telemetry arrived, central clock.",
     lambda s: s.record.telemetry_at),
    ("fleet_device_backlog_items", "gauge",
     "Recordings held on the appliance, not yet receipted by the central site.",
     lambda s: s.backlog_items),
    ("fleet_device_backlog_bytes", "gauge", "Bytes of those recordings.",
     lambda s: s.backlog_bytes),
    ("fleet_device_backlog_oldest_age_seconds", "gauge",
     "Age of the oldest unreceipted recording as of now (grows while the office is silent).",
     lambda s: s.backlog_age_s if s.backlog_items else (0 if s.telemetry else None)),
    ("fleet_device_on_4g", "gauge", "1 if the uplink in use is 4G.",
     lambda s: None if s.uplink is None else s.uplink == "4g"),
    ("fleet_device_uplink_none", "gauge", "1 if the appliance reported no working uplink.",
     lambda s: None if s.uplink is None else s.uplink == "none"),
    ("fleet_device_mobile_used_bytes", "gauge", "4G bytes used this billing period.",
     lambda s: s.telemetry.mobile_used_bytes if s.telemetry else None),
    ("fleet_device_mobile_budget_bytes", "gauge", "4G budget for this billing period, bytes.",
     lambda s: s.telemetry.mobile_budget_bytes if s.telemetry else None),
    ("fleet_device_disk_free_bytes", "gauge", "Free bytes on the appliance's state filesystem.",
     lambda s: s.disk_free_bytes),
    ("fleet_device_disk_size_bytes", "gauge", "Size of that filesystem, bytes.",
     lambda s: s.telemetry.disk_total_bytes if s.telemetry else None),
    ("fleet_device_cpu_temperature_celsius", "gauge", "CPU temperature.",
     lambda s: s.telemetry.cpu_temp_c if s.telemetry else None),
    ("fleet_device_under_voltage", "gauge", "1 if the Pi reports under-voltage now.",
     lambda s: (f.under_voltage_now if (f := s.telemetry.throttle_flags) else None)
     if s.telemetry else None),
    ("fleet_device_under_voltage_since_boot", "gauge",
     "1 if the Pi saw under-voltage since boot.",
     lambda s: (f.under_voltage_occurred if (f := s.telemetry.throttle_flags) else None)
     if s.telemetry else None),
    ("fleet_device_throttled", "gauge", "1 if the Pi is throttled or frequency-capped now.",
     lambda s: ((f.throttled_now or f.freq_capped_now)
                if (f := s.telemetry.throttle_flags) else None) if s.telemetry else None),
    ("fleet_device_uptime_seconds", "gauge", "Seconds since the appliance booted.",
     lambda s: s.telemetry.uptime_s if s.telemetry else None),
    ("fleet_device_programs_stale", "gauge",
     "Appliance programs whose heartbeat is stale (names on the dashboard).",
     lambda s: len(s.stale_programs) if s.telemetry else None),
    ("fleet_device_errors", "gauge", "Active error keys reported by the appliance.",
     lambda s: len(s.telemetry.errors) if s.telemetry else None),
    ("fleet_device_last_receipt_age_seconds", "gauge",
     "Seconds since the appliance last got a custody receipt, as reported.",
     lambda s: s.telemetry.last_receipt_age_s if s.telemetry else None),
    ("fleet_device_telemetry_messages_total", "counter",
     "Telemetry messages accepted from this appliance.",
     lambda s: s.record.telemetry_count),
    ("fleet_device_rejected_messages_total", "counter",
     "Messages from this appliance refused by the schema.",
     lambda s: s.record.rejected_count),
)

SERVICE_SERIES = (
    "fleet_offices", "fleet_mqtt_connected", "fleet_mqtt_connects_total",
    "fleet_messages_received_total", "fleet_messages_rejected_total",
    "fleet_messages_ignored_total", "fleet_store_flushes_total",
    "fleet_store_flush_failures_total", "fleet_store_flush_seconds_total",
    "fleet_store_written_records_total", "fleet_store_written_buckets_total",
    "fleet_store_pending_records", "fleet_store_pending_samples",
    "fleet_history_samples_dropped_total", "fleet_start_time_seconds",
)
METRIC_NAMES = ("fleet_device_info", *(n for n, *_ in DEVICE_SERIES), *SERVICE_SERIES)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float | int | bool) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    return repr(float(v))


def _head(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def render_metrics(service: FleetService, statuses: Iterable[OfficeStatus] | None = None) -> str:
    rows = sorted(service.statuses() if statuses is None else statuses,
                  key=lambda s: s.device_id)
    out: list[str] = []
    _head(out, "fleet_device_info", "gauge",
          "Office metadata: name, region, software versions (value always 1).")
    for s in rows:
        o = service.directory.get(s.device_id)
        labels = [f'device_id="{s.device_id}"', f'office="{_esc(o.office)}"',
                  f'region="{_esc(o.region)}"']
        if s.telemetry is not None:
            labels += [f'{_LABEL_NAME_RE.sub("_", k)}_version="{_esc(v)}"'
                       for k, v in sorted(s.telemetry.versions.items())]
        out.append(f"fleet_device_info{{{','.join(labels)}}} 1")
    for name, kind, help_text, get in DEVICE_SERIES:
        _head(out, name, kind, help_text)
        for s in rows:
            v = get(s)
            if v is not None:
                out.append(f'{name}{{device_id="{s.device_id}"}} {_num(v)}')

    st = service.stats
    by_state = {k: 0 for k in STATES}
    for s in rows:
        by_state[s.state] += 1
    _head(out, "fleet_offices", "gauge", "Offices by derived state.")
    out += [f'fleet_offices{{state="{k}"}} {v}' for k, v in by_state.items()]
    pending_records, pending_samples = service.pending
    simple: list[tuple[str, str, str, float | int | bool]] = [
        ("fleet_mqtt_connected", "gauge", "1 while connected and subscribed to the broker.",
         st.mqtt_connected),
        ("fleet_mqtt_connects_total", "counter", "Successful broker connections.",
         st.mqtt_connects),
        ("fleet_store_flushes_total", "counter", "Batches written to the store.", st.flushes),
        ("fleet_store_flush_failures_total", "counter", "Batch writes that failed (retried).",
         st.flush_failures),
        ("fleet_store_flush_seconds_total", "counter", "Time spent writing batches.",
         st.flush_seconds_total),
        ("fleet_store_written_records_total", "counter", "Latest-state rows written.",
         st.flushed_records),
        ("fleet_store_written_buckets_total", "counter", "History bucket upserts.",
         st.flushed_buckets),
        ("fleet_store_pending_records", "gauge", "Records waiting for the next batch.",
         pending_records),
        ("fleet_store_pending_samples", "gauge", "History samples waiting for the next batch.",
         pending_samples),
        ("fleet_history_samples_dropped_total", "counter",
         "History samples dropped because the store was unavailable too long.",
         st.samples_dropped),
        ("fleet_start_time_seconds", "gauge", "When this fleet service started.",
         service.started_at),
    ]
    for name, kind, help_text, value in simple:
        _head(out, name, kind, help_text)
        out.append(f"{name} {_num(value)}")
    for name, help_text, label, counter in (
        ("fleet_messages_received_total", "Accepted messages by kind.", "kind", st.received),
        ("fleet_messages_rejected_total", "Refused messages by error key.", "key", st.rejected),
        ("fleet_messages_ignored_total", "Messages ignored (bad topic, cleared status).",
         "reason", st.ignored),
    ):
        _head(out, name, "counter", help_text)
        items = dict(counter)
        if label == "kind":
            items = {"status": items.get("status", 0), "telemetry": items.get("telemetry", 0)}
        out += [f'{name}{{{label}="{_esc(k)}"}} {v}' for k, v in sorted(items.items())]
    out.append("")
    return "\n".join(out)
