"""What the fleet view knows about each office, and how one message changes it.

Place in the data flow: ``ingest`` turns an MQTT message into an observation; ``apply``
folds it into the device's latest record (kept in memory by the service and saved by the
store); ``samples_to_buckets`` folds telemetry into downsampled history buckets. All pure:
the same functions run in the service, in the store tests and in the benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from edge.telemetry.schema import Status, Telemetry, decode_telemetry

__all__ = [
    "Bucket",
    "DeviceRecord",
    "Observation",
    "RejectObs",
    "Retention",
    "StatusObs",
    "TelemetryObs",
    "apply",
    "bucket_of",
    "merge_buckets",
    "samples_to_buckets",
]


@dataclass(frozen=True)
class TelemetryObs:
    device_id: str
    received_at: float          # central clock: the only clock staleness is measured by
    telemetry: Telemetry
    raw: str                    # the payload as received (keeps newer-minor extras)


@dataclass(frozen=True)
class StatusObs:
    device_id: str
    received_at: float
    status: Status
    retained: bool              # replayed by the broker on subscribe, not news


@dataclass(frozen=True)
class RejectObs:
    """A message on a device's topic that broke the schema: kept so ops can see which
    appliance sends junk (and why) instead of the office silently looking stale."""

    device_id: str
    received_at: float
    key: str                    # e.g. telemetry.invalid, telemetry.version
    reason: str


Observation = TelemetryObs | StatusObs | RejectObs


@dataclass(frozen=True)
class DeviceRecord:
    device_id: str
    first_seen: float
    status: str | None = None           # last status message: online | offline | None
    status_at: float | None = None      # when that state began, central clock
    status_reason: str | None = None    # offline: lost | shutdown
    telemetry_raw: str | None = None    # last accepted telemetry payload, as received
    telemetry: Telemetry | None = field(default=None, compare=False)  # telemetry_raw decoded
    telemetry_at: float | None = None
    telemetry_count: int = 0
    rejected_count: int = 0
    last_reject_at: float | None = None
    last_reject: str | None = None      # "key: reason"

    def __post_init__(self) -> None:
        # Records loaded from a store carry only the raw payload: decode it once here, not on
        # every dashboard request.
        if self.telemetry is None and self.telemetry_raw is not None:
            object.__setattr__(self, "telemetry", decode_telemetry(self.telemetry_raw.encode()))


def apply(record: DeviceRecord | None, obs: Observation) -> DeviceRecord:
    rec = record or DeviceRecord(device_id=obs.device_id, first_seen=obs.received_at)
    if isinstance(obs, TelemetryObs):
        if rec.telemetry_at is not None and obs.received_at < rec.telemetry_at:
            # Clock steps on the central host must not roll the latest state back.
            return replace(rec, telemetry_count=rec.telemetry_count + 1)
        return replace(rec, telemetry_raw=obs.raw, telemetry=obs.telemetry,
                       telemetry_at=obs.received_at, telemetry_count=rec.telemetry_count + 1)
    if isinstance(obs, StatusObs):
        state = obs.status.state
        if obs.retained and rec.status == state:
            # The broker replays the retained status on every (re)subscribe: not a change,
            # so the time the state began stays the one we saved.
            return rec
        return replace(rec, status=state, status_at=obs.received_at,
                       status_reason=obs.status.reason if state == "offline" else None)
    return replace(rec, rejected_count=rec.rejected_count + 1, last_reject_at=obs.received_at,
                   last_reject=f"{obs.key}: {obs.reason}"[:500])


# --- downsampled history -----------------------------------------------------------------------

@dataclass(frozen=True)
class Retention:
    """History resolutions and how long each is kept: fine for the last days, coarse for the
    month. At 7,000 offices: 5-min × 2 days ≈ 4 M rows, 1-h × 30 days ≈ 5 M rows."""

    tiers: tuple[tuple[int, int], ...] = ((300, 2 * 86400), (3600, 30 * 86400))

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(r for r, _ in self.tiers)

    def pick(self, span_s: float) -> int:
        """The finest resolution that still covers ``span_s`` seconds back."""
        for res, keep in self.tiers:
            if span_s <= keep:
                return res
        return self.tiers[-1][0]


@dataclass(frozen=True)
class Bucket:
    """Aggregate of the telemetry samples of one device in [start, start + res)."""

    device_id: str
    res: int
    start: int
    samples: int
    wired: int                          # samples on each uplink: the link history
    mobile: int
    no_uplink: int
    backlog_items_max: int
    backlog_bytes_max: int
    backlog_age_max: int | None
    disk_free_min: int | None
    mobile_used_max: int | None


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def bucket_of(obs: TelemetryObs, res: int) -> Bucket:
    t = obs.telemetry
    return Bucket(
        device_id=obs.device_id, res=res, start=int(obs.received_at) // res * res, samples=1,
        wired=int(t.uplink == "wired"), mobile=int(t.uplink == "4g"),
        no_uplink=int(t.uplink == "none"),
        backlog_items_max=t.backlog_items, backlog_bytes_max=t.backlog_bytes,
        backlog_age_max=t.backlog_oldest_age_s, disk_free_min=t.disk_free_bytes,
        mobile_used_max=t.mobile_used_bytes,
    )


def merge_buckets(a: Bucket, b: Bucket) -> Bucket:
    """The same combination the stores' SQL upserts perform (tested against each other)."""
    return replace(
        a,
        samples=a.samples + b.samples, wired=a.wired + b.wired, mobile=a.mobile + b.mobile,
        no_uplink=a.no_uplink + b.no_uplink,
        backlog_items_max=max(a.backlog_items_max, b.backlog_items_max),
        backlog_bytes_max=max(a.backlog_bytes_max, b.backlog_bytes_max),
        backlog_age_max=_max(a.backlog_age_max, b.backlog_age_max),
        disk_free_min=_min(a.disk_free_min, b.disk_free_min),
        mobile_used_max=_max(a.mobile_used_max, b.mobile_used_max),
    )


def samples_to_buckets(samples: Iterable[TelemetryObs], resolutions: Sequence[int]) -> list[Bucket]:
    """Pre-aggregate a batch so each (device, resolution, bucket) is written once."""
    acc: dict[tuple[str, int, int], Bucket] = {}
    for obs in samples:
        for res in resolutions:
            b = bucket_of(obs, res)
            k = (b.device_id, res, b.start)
            prev = acc.get(k)
            acc[k] = b if prev is None else merge_buckets(prev, b)
    return list(acc.values())
