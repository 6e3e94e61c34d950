"""MQTT message → observation: the one place that decides which device a message is about.

Place in the data flow: the subscriber hands every message on ``edge/+/up/status`` and
``edge/+/up/telemetry`` to ``observe``; the result goes to the service. The device id is
taken from the topic and only from it: the broker's ACL lets a client publish only under
its own certificate's name, so the topic is authenticated and the payload is not (the
schema refuses a payload that tries to name a device). Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.central.fleet.model import Observation, RejectObs, StatusObs, TelemetryObs
from edge.telemetry.schema import TelemetryError, decode_status, decode_telemetry

__all__ = ["DEVICE_ID_RE", "SUBSCRIPTIONS", "Ignored", "observe", "parse_topic"]

# Same rule as edge.config: equals the certificate CN and the MQTT username.
DEVICE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
# (topic filter, QoS): status is published at QoS 1, telemetry at QoS 0.
SUBSCRIPTIONS = (("edge/+/up/status", 1), ("edge/+/up/telemetry", 0))


@dataclass(frozen=True)
class Ignored:
    """A message we neither store nor hold against a device (counted in the metrics)."""

    reason: str       # bad_topic | cleared


def parse_topic(topic: str) -> tuple[str, str] | None:
    """``edge/{d}/up/status`` → (d, "status"); None for anything else."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "edge" or parts[2] != "up":
        return None
    if parts[3] not in ("status", "telemetry") or not DEVICE_ID_RE.match(parts[1]):
        return None
    return parts[1], parts[3]


def observe(topic: str, payload: bytes, received_at: float,
            retained: bool = False) -> Observation | Ignored:
    parsed = parse_topic(topic)
    if parsed is None:
        return Ignored("bad_topic")
    device_id, kind = parsed
    if kind == "status" and not payload:
        # An empty retained message clears the retained status (decommissioning).
        return Ignored("cleared")
    try:
        if kind == "status":
            return StatusObs(device_id, received_at, decode_status(payload), retained)
        t = decode_telemetry(payload)
        return TelemetryObs(device_id, received_at, t, payload.decode("utf-8"))
    except TelemetryError as e:
        return RejectObs(device_id, received_at, e.key, e.message)
