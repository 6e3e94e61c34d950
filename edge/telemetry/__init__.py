"""Telemetry: what an appliance reports about itself every interval, and how it is encoded.

``schema`` is shared by the appliance and the central fleet view; ``collect`` reads the
device's Linux facts and offers the forwarder one call, ``build_telemetry(...) -> bytes``.
"""

from edge.telemetry.collect import DeviceFacts, Sources, build_telemetry, collect_facts
from edge.telemetry.schema import (
    SCHEMA_VERSION,
    Status,
    Telemetry,
    TelemetryError,
    TelemetryVersionError,
    ThrottleFlags,
    decode_status,
    decode_telemetry,
    encode_status,
    encode_telemetry,
    last_will,
    online_status,
    shutdown_status,
    status_topic,
    telemetry_topic,
)

__all__ = [
    "SCHEMA_VERSION",
    "DeviceFacts",
    "Sources",
    "Status",
    "Telemetry",
    "TelemetryError",
    "TelemetryVersionError",
    "ThrottleFlags",
    "build_telemetry",
    "collect_facts",
    "decode_status",
    "decode_telemetry",
    "encode_status",
    "encode_telemetry",
    "last_will",
    "online_status",
    "shutdown_status",
    "status_topic",
    "telemetry_topic",
]
